"""InteractVLM: LLaVA (transformers) → seg-token hidden state → view-conditioned prompts → SAM decoder over V views
→ per-vertex contact. ``forward`` is teacher-forced (training, LISA-style evaluation); ``generate_contact`` decodes
greedily with a KV cache (one shared prefill per image for all of its queries, ``model.shared_prefix``) and takes the
hidden state that produced each query's seg token.

A 2D model (``config.contact_2d``) runs the same path with the photo as its one SAM view (``PhotoTemplate``): the
mask comes back in the photo's frame and nothing is lifted.
"""

from __future__ import annotations

import hashlib
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlavaForConditionalGeneration, PreTrainedModel, StoppingCriteria, StoppingCriteriaList

from model.calibration import centre_on_threshold, decision_threshold
from model.config import InteractVLMConfig
from model.prompts import AttentionSplitter, build_cam_encoder, build_text_hidden_fcs, seg_positions
from model.sam import ViewEmbeddingCache, build_sam_model, decode_views, encoder_fingerprint, postprocess_masks
from model.shared_prefix import AnswerDrafts, DecodedRows, answer_tokens, decode_shared_prefix
from model.tokenizer import TINY_AFFORDANCES, TINY_BODY_PARTS, TINY_OBJECT_WORDS
from model.view_templates import PhotoTemplate, ViewTemplate
from utils import conversation as conv
from utils.chat_prompt import chat_prompt, conversation_text

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class LinearProjector(nn.Module):
    """LLaVA-v1 / LISA projector: a single ``Linear(vision → text)`` (transformers' LLaVA ships only the 1.5 MLP)."""

    def __init__(self, vision_hidden: int, text_hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(vision_hidden, text_hidden)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear(image_features)


def clip_resize_crop(array: np.ndarray, size: int, resample) -> np.ndarray:
    """CLIPImageProcessor's geometry: the shortest side resized to ``size`` (PIL ``resample``), then a centred
    ``size``² crop. Label maps go through it with ``Image.NEAREST`` to stay aligned with the pixels."""
    from PIL import Image

    h, w = array.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
    resized = np.asarray(Image.fromarray(array).resize((nw, nh), resample))
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top: top + size, left: left + size]


def clip_preprocess(images: list[np.ndarray], image_size: int) -> torch.Tensor:
    """CLIPImageProcessor's steps: resize the shortest side to ``image_size`` (bicubic), centre-crop, normalise."""
    from PIL import Image

    batch = []
    for image in images:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"CLIP input must be an RGB uint8 image [H, W, 3], got {image.shape} {image.dtype}")
        crop = clip_resize_crop(image, image_size, Image.BICUBIC).astype(np.float32) / 255.0
        tensor = (torch.from_numpy(crop).permute(2, 0, 1) - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]
        batch.append(tensor)
    return torch.stack(batch)


@dataclass
class InteractVLMOutput:
    loss: torch.Tensor | None = None  # language-model cross-entropy (other losses: model.losses)
    logits: torch.Tensor | None = None
    seg_embeddings: torch.Tensor | None = None  # [K, D] one per seg token found
    seg_batch_index: torch.Tensor | None = None  # [K] sample of each seg token
    mask_logits: torch.Tensor | list[torch.Tensor] | None = None  # [K, V, M, M] (a list for 2D photos of mixed sizes)
    vertex_probs: list[torch.Tensor] = field(default_factory=list)  # K tensors [N_k]


@dataclass
class ContactPrediction:
    """One query's result. ``found_seg`` is False when the answer had no seg token: masks / vertices are then zeros."""

    text: str
    found_seg: bool
    mask_logits: torch.Tensor  # [V, M, M]
    vertex_probs: torch.Tensor | None  # [N] (None for 2D queries)

    @property
    def is_2d(self) -> bool:
        return self.vertex_probs is None


class InteractVLMPreTrainedModel(PreTrainedModel):
    config_class = InteractVLMConfig
    base_model_prefix = "interactvlm"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["LlamaDecoderLayer", "CLIPEncoderLayer", "SamVisionLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        """Sub-models (LLaVA, SAM) initialise themselves and our new modules initialise explicitly in their
        constructors (the original left their initialisation to Hugging Face's missing-weight path when loading LISA weights); nothing to redo here."""


class InteractVLMForCausalLM(InteractVLMPreTrainedModel):
    def __init__(self, config: InteractVLMConfig) -> None:
        super().__init__(config)
        self.vlm = LlavaForConditionalGeneration(config.vlm_config)
        if config.projector_type == "linear":
            vision_hidden = config.vlm_config.vision_config.hidden_size
            self.vlm.model.multi_modal_projector = LinearProjector(vision_hidden, config.text_hidden_size)
        self.sam = build_sam_model(config.sam_config)
        if config.contact_2d and config.num_views != 1:
            raise ValueError(f"a 2D contact model segments the photo alone: num_views must be 1, got {config.num_views}")
        if config.train_sam_encoder and not config.contact_2d:
            raise ValueError("train_sam_encoder is for 2D models: 3D templates use cached, frozen SAM embeddings")
        if config.sam_config.mask_decoder_config.hidden_size != config.out_dim:
            raise ValueError(f"out_dim {config.out_dim} must equal the SAM prompt size {config.sam_config.mask_decoder_config.hidden_size}")
        self.text_hidden_fcs = build_text_hidden_fcs(config.text_hidden_size, config.out_dim, config.seg_batch_norm)
        self.cam_pose_encoder = build_cam_encoder(config.cam_encoder_type, config.out_dim, config.num_views)
        self.attention_splitter = AttentionSplitter(config.out_dim) \
            if config.token_type == "Gen-Hu-Obj" and config.view_splitter else None
        self.view_cache = ViewEmbeddingCache()
        self.templates: dict[str, ViewTemplate] = {}  # plain dict: not parameters, not in the state dict
        self._fingerprint: str | None = None
        self.post_init()

    # ------------------------------------------------------------------ tokens and templates
    @property
    def seg_token_ids(self) -> list[int]:
        ids = [self.config.seg_token_index, self.config.hseg_token_index, self.config.oseg_token_index]
        return [i for i in dict.fromkeys(ids) if i is not None]

    def object_token_ids(self) -> list[int]:
        return [self.config.oseg_token_index] if self.config.token_type == "Gen-Hu-Obj" else []

    def add_template(self, key: str, template: ViewTemplate) -> ViewTemplate:
        if template.num_views != self.config.num_views:
            raise ValueError(f"template {key!r} has {template.num_views} views; the model expects {self.config.num_views}")
        self.templates[key] = template.to(self.device)
        return template

    def template(self, key: str = "human") -> ViewTemplate:
        if key not in self.templates:
            raise KeyError(f"no {key!r} template attached; known: {sorted(self.templates)} (load the model with "
                           "model.io.load_interactvlm, or call add_template)")
        template = self.templates[key]
        if template.pixel_values.device != self.device:
            template.to(self.device)
        return template

    def default_template(self, image: np.ndarray) -> ViewTemplate | PhotoTemplate:
        """The SAM input of a query that names none: the photo for a 2D model, else the attached human body."""
        if self.config.contact_2d:
            return PhotoTemplate.from_image(image, self.config.sam_image_size)
        return self.template("human")

    def view_embeddings(self, template: ViewTemplate | PhotoTemplate) -> torch.Tensor:
        """``[V, C, h, w]`` SAM embeddings of a template's renders, from the cache when possible.

        A photo is encoded afresh (never cached); with ``train_sam_encoder`` and in training mode, with gradients.
        """
        if template.is_photo:
            train_encoder = self.config.train_sam_encoder and self.training and torch.is_grad_enabled()
            param = next(self.sam.vision_encoder.parameters())
            with torch.set_grad_enabled(train_encoder):  # (SamModel.get_image_embeddings is always no_grad)
                return self.sam.vision_encoder(template.pixel_values.to(param.device, param.dtype))[0]
        if self._fingerprint is None:
            self._fingerprint = encoder_fingerprint(self.sam)
        return self.view_cache.get(self.sam, template.pixel_values, self._fingerprint)

    def invalidate_view_cache(self) -> None:
        """Call after changing SAM encoder weights in place (loading does it automatically)."""
        self._fingerprint = None
        self.view_cache.clear_memory()

    # ------------------------------------------------------------------ VLM
    def image_features(self, clip_pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 3, s, s]`` → projected patch features ``[B, P, H]`` (layer −2, CLS dropped)."""
        cfg = self.config.vlm_config
        out = self.vlm.model.get_image_features(
            pixel_values=clip_pixel_values.to(self.vlm.dtype), vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy, return_dict=True,
        )
        return torch.stack(list(out.pooler_output))

    def embed_inputs(self, input_ids: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the image placeholders replaced by the image features (one row per placeholder)."""
        embeds = self.vlm.get_input_embeddings()(input_ids)
        mask = input_ids == self.config.vlm_config.image_token_index
        expected = image_features.shape[0] * image_features.shape[1]
        if int(mask.sum()) != expected:
            raise ValueError(f"prompts hold {int(mask.sum())} image tokens but the images give {expected} features; "
                             f"each prompt needs exactly {image_features.shape[1]} (see utils.conversation.build_prompt)")
        return embeds.masked_scatter(mask[..., None], image_features.to(embeds.dtype).reshape(-1, embeds.shape[-1]))

    # ------------------------------------------------------------------ seg embeddings → masks → vertices
    def seg_to_view_prompts(self, hidden: torch.Tensor, cameras: torch.Tensor, is_object: torch.Tensor) -> torch.Tensor:
        """``[K, H]`` hidden states and the template's ``[V, 5]`` camera vectors → ``[K, V, D]`` prompts."""
        return self.view_prompts(self.text_hidden_fcs(hidden), cameras, is_object)

    def view_prompts(self, embeddings: torch.Tensor, cameras: torch.Tensor, is_object: torch.Tensor) -> torch.Tensor:
        """``[K, D]`` seg embeddings (``text_hidden_fcs`` output) and ``[V, 5]`` cameras → ``[K, V, D]`` prompts."""
        views = self.cam_pose_encoder(embeddings, cameras)
        if self.attention_splitter is not None:
            views = self.attention_splitter(views, is_object)
        return views

    def decode_template(self, view_prompts: torch.Tensor, template: ViewTemplate) -> torch.Tensor:
        """``[K, V, D]`` prompts for one template → ``[K, V, M, M]`` mask logits at the template's mask size."""
        embeddings = self.view_embeddings(template).to(view_prompts.dtype)
        low_res = decode_views(self.sam, embeddings[None].expand(len(view_prompts), *embeddings.shape), view_prompts,
                               self.config.per_view_tokens)
        k, v = low_res.shape[:2]
        masks = postprocess_masks(low_res.reshape(k * v, *low_res.shape[2:]), template.input_size,
                                  self.config.sam_image_size, template.mask_size)
        return masks.reshape(k, v, *masks.shape[-2:])

    def predict_from_hidden(self, hidden: torch.Tensor, templates: list[ViewTemplate | PhotoTemplate],
                            is_object: torch.Tensor | None = None,
                            ) -> tuple[torch.Tensor | list[torch.Tensor], list[torch.Tensor | None]]:
        """Seg hidden states (one per query) + each query's template → mask logits ``[K,V,M,M]`` and vertex probs.

        Queries sharing a template are decoded as one batch (the usual case: every hcontact query uses the body).
        2D queries give ``None`` vertex probs, and a list of ``[1, H_k, W_k]`` masks when their photos differ in size.
        """
        return self.predict_from_embeddings(self.text_hidden_fcs(hidden), templates, is_object)

    def predict_from_embeddings(self, embeddings: torch.Tensor, templates: list[ViewTemplate | PhotoTemplate],
                                is_object: torch.Tensor | None = None,
                                ) -> tuple[torch.Tensor | list[torch.Tensor], list[torch.Tensor | None]]:
        """:meth:`predict_from_hidden` after ``text_hidden_fcs``. The projection runs once over all queries, before
        they are grouped by template, so a ``seg_batch_norm`` projection normalises (and, in training, updates its
        running statistics) over the whole batch, once."""
        if len(templates) != len(embeddings):
            raise ValueError(f"{len(embeddings)} seg embeddings but {len(templates)} templates")
        is_object = torch.zeros(len(embeddings), dtype=torch.bool, device=embeddings.device) if is_object is None else is_object
        masks: list[torch.Tensor | None] = [None] * len(embeddings)
        vertices: list[torch.Tensor | None] = [None] * len(embeddings)
        groups: dict[int, list[int]] = {}
        for k, template in enumerate(templates):
            groups.setdefault(id(template), []).append(k)
        for indices in groups.values():
            template = templates[indices[0]]
            idx = torch.tensor(indices, device=embeddings.device)
            prompts = self.view_prompts(embeddings[idx], template.cameras.to(embeddings.dtype), is_object[idx])
            group_masks = self.decode_template(prompts, template)
            group_vertices = template.lift(group_masks)
            for j, k in enumerate(indices):
                masks[k] = group_masks[j]
                vertices[k] = None if group_vertices is None else group_vertices[j]
        if len({tuple(m.shape) for m in masks}) > 1:  # 2D queries on photos of different sizes
            return masks, vertices
        return torch.stack(masks), vertices

    # ------------------------------------------------------------------ training / teacher-forced forward
    def forward(
        self,
        input_ids: torch.Tensor,
        clip_pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        templates: list[ViewTemplate] | None = None,
        image_features: torch.Tensor | None = None,
        **_: object,
    ) -> InteractVLMOutput:
        """Teacher-forced pass. ``templates`` gives each sample's SAM template (default: the attached human body; a
        2D model needs each sample's ``PhotoTemplate``); every seg token in the sequence yields one prediction on it."""
        features = self.image_features(clip_pixel_values) if image_features is None else image_features
        embeds = self.embed_inputs(input_ids, features)
        hidden = self.vlm.model.language_model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        logits = self.vlm.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        positions = seg_positions(input_ids, self.seg_token_ids)
        out = InteractVLMOutput(loss=loss, logits=logits, seg_batch_index=positions[:, 0])
        if len(positions) == 0:
            return out
        seg_hidden = hidden[positions[:, 0], positions[:, 1]]
        if templates is None and self.config.contact_2d:
            raise ValueError("a 2D model segments each sample's photo: pass templates=[PhotoTemplate.from_image(...)]")
        sample_templates = templates if templates is not None else [self.template("human")] * len(input_ids)
        per_seg = [sample_templates[int(b)] for b in positions[:, 0]]
        next_ids = input_ids[positions[:, 0], positions[:, 1] + 1]
        is_object = torch.isin(next_ids, torch.tensor(self.object_token_ids(), device=next_ids.device, dtype=next_ids.dtype))
        out.seg_embeddings = self.text_hidden_fcs(seg_hidden)
        out.mask_logits, out.vertex_probs = self.predict_from_embeddings(out.seg_embeddings, per_seg, is_object)
        return out

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate_contact(
        self,
        tokenizer,
        images: list[np.ndarray],
        queries: list[dict],
        max_new_tokens: int = 64,
        full_text: bool = False,
        shared_prefix: bool = True,
        draft_answers: bool = True,
        **generate_kwargs,
    ) -> list[ContactPrediction]:
        """Greedy, KV-cached answers for several queries over a few images, batched.

        ``queries``: dicts with ``image`` (index into ``images``), ``prompt`` (the full llava_v1 text ending at
        ``ASSISTANT:``, see ``utils.conversation``) and optional ``template`` (a ``ViewTemplate``; default: the
        human body, or the photo for a 2D model).

        Pass all queries of an image in one call: with ``shared_prefix`` (the default) the queries of one image (the
        same index, or equal pixels under another index) go through CLIP once and share one prefill of their common
        prompt prefix (system sentence + image tokens), whose KV cache each question then continues as one batch
        (``model.shared_prefix``). ``shared_prefix=False`` is the plain path: transformers' ``generate`` over the
        whole left-padded prompts, CLIP once per entry of ``images``; it takes any ``generate`` keyword, the shared
        path only ``logits_processor``. Both give the same ids and, up to float rounding, the same masks.

        ``full_text=False`` ends each query's decoding at its first seg token, the only position its masks need (the
        answer text then ends with that token); ``full_text=True`` decodes the whole answer, up to ``</s>`` or
        ``max_new_tokens``.

        ``draft_answers`` (shared path, no ``logits_processor``): speculative greedy decoding with the answer
        templates the models are trained on as drafts (``answer_drafts``); each drafted token is checked against the
        model's own greedy choice, so the answers are the same, in fewer language-model steps.
        """
        if not queries:
            return []
        for b, query in enumerate(queries):
            if not 0 <= query["image"] < len(images):
                raise IndexError(f"query {b}: image index {query['image']} but {len(images)} images were given")
        stop_ids = None if full_text else set(self.seg_token_ids)
        if shared_prefix:
            decoded, image_of = self._decode_shared_prefix(tokenizer, images, queries, max_new_tokens, stop_ids,
                                                           generate_kwargs, draft_answers)
            templates = self._query_templates(images, queries, image_of)
        else:
            decoded, templates = self._decode_with_generate(tokenizer, images, queries, max_new_tokens, stop_ids,
                                                            generate_kwargs)
        return self._predictions(tokenizer, decoded, templates)

    @torch.no_grad()
    def generate_text(self, tokenizer, images: list[np.ndarray], queries: list[dict], max_new_tokens: int = 32,
                      draft_answers: bool = True) -> list[str]:
        """Greedy answers (to ``</s>``) of text-only queries (``image``, ``prompt`` as in ``generate_contact``), on the
        shared-prefix path; no masks are decoded."""
        if not queries:
            return []
        decoded, _ = self._decode_shared_prefix(tokenizer, images, queries, max_new_tokens, None, {}, draft_answers)
        return [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in decoded.tokens]

    @torch.no_grad()
    def contact_prompts(self, tokenizer, images: list[np.ndarray], asks: list[dict],
                        max_new_tokens: int = 64) -> list[tuple[str, str | None]]:
        """Each ask's generation prompt and the model's own opening answer (None when it has none).

        ``asks``: dicts with ``image`` (index into ``images``), ``question`` and ``task``. A model trained with
        ``config.opening_turn`` is first asked ``utils.conversation.OPENING_QUESTION`` about each photo that has a
        question of ``OPENING_TASKS`` (once per image index, greedy); the task question then follows that answer as a
        second turn, exactly the conversation it was trained on. Otherwise the prompt is ``chat_prompt`` of the
        question. Training (the collator), validation, evaluation and the demo all prompt through here or through
        ``utils.chat_prompt``, so the text is the trained one token for token.
        """
        opened = sorted({a["image"] for a in asks if conv.opening_applies(self.config.opening_turn, a["task"])})
        openings = dict(zip(opened, self.generate_text(
            tokenizer, images, [{"image": i, "prompt": chat_prompt(self.config, conv.OPENING_QUESTION)} for i in opened],
            max_new_tokens)))
        prompts: list[tuple[str, str | None]] = []
        for ask in asks:
            if conv.opening_applies(self.config.opening_turn, ask["task"]):
                opening = openings[ask["image"]]
                turns = [(conv.OPENING_QUESTION, opening), (ask["question"], None)]
                prompts.append((conversation_text(turns, self.config)[0], opening))
            else:
                prompts.append((chat_prompt(self.config, ask["question"]), None))
        return prompts

    def _encode_prompts(self, tokenizer, queries: list[dict]) -> list[list[int]]:
        encoded = tokenizer([q["prompt"] for q in queries], add_special_tokens=False)["input_ids"]  # one batched call
        return [[tokenizer.bos_token_id] + ids for ids in encoded]

    def _query_templates(self, images: list[np.ndarray], queries: list[dict],
                         image_key: list[int]) -> list[ViewTemplate | PhotoTemplate]:
        """Each query's SAM template; a default one is built once per ``image_key`` (so once per distinct photo)."""
        defaults: dict[int, ViewTemplate | PhotoTemplate] = {}
        templates = []
        for q in queries:
            if q.get("template") is not None:
                templates.append(q["template"])
                continue
            key = image_key[q["image"]]
            if key not in defaults:
                defaults[key] = self.default_template(images[q["image"]]).to(self.device)
            templates.append(defaults[key])
        return templates

    def embed_rows(self, input_ids: torch.Tensor, features: torch.Tensor, row_image: torch.Tensor) -> torch.Tensor:
        """Token embeddings of ``[N, L]`` ids whose rows each hold either none or all ``P`` placeholders of one image:
        row ``n``'s placeholders take ``features[row_image[n]]`` (``features``: ``[I, P, H]``)."""
        embeds = self.vlm.get_input_embeddings()(input_ids)
        mask = input_ids == self.config.vlm_config.image_token_index
        counts = mask.sum(1)
        tokens = features.shape[1]
        bad = torch.nonzero((counts != 0) & (counts != tokens)).flatten().tolist()
        if bad:
            raise ValueError(f"prompt rows {bad} hold {counts[bad].tolist()} image tokens; each prompt needs exactly "
                             f"{tokens} in one block (see utils.conversation.build_prompt)")
        with_image = counts > 0
        if not bool(with_image.any()):
            return embeds
        source = features[row_image[with_image]].to(embeds.dtype).reshape(-1, embeds.shape[-1])
        return embeds.masked_scatter(mask[..., None], source)

    def answer_drafts(self, tokenizer) -> AnswerDrafts:
        """Every answer template of ``utils.conversation`` with this model's seg tokens, filled with each body part,
        affordance and object word of our vocabulary, tokenized: the lookup text of speculative decoding. Built once
        per tokenizer (a few hundred short texts)."""
        cached = getattr(self, "_answer_drafts", None)
        if cached is not None and cached[0]() is tokenizer:
            return cached[1]
        texts: dict[str, None] = {}
        for (task, _), (_, answers) in conv.TEMPLATES.items():
            seg = conv.seg_token_for(task, self.config.token_type)
            for answer in answers:
                fills = max(len(TINY_BODY_PARTS) if "{body_parts}" in answer else 1,
                            len(TINY_AFFORDANCES) if "{affordance}" in answer else 1,
                            len(TINY_OBJECT_WORDS) if "{class_name}" in answer else 1)
                for i in range(fills):
                    texts[answer.format(seg=seg, body_parts=TINY_BODY_PARTS[i % len(TINY_BODY_PARTS)],
                                        affordance=TINY_AFFORDANCES[i % len(TINY_AFFORDANCES)],
                                        class_name=TINY_OBJECT_WORDS[i % len(TINY_OBJECT_WORDS)])] = None
        for phrase in conv.POSE_PHRASES.values():
            texts[conv.opening_answer(phrase)] = None
            for i in range(len(TINY_BODY_PARTS)):  # opening answers that name the parts (datasets' opening_parts)
                texts[conv.opening_answer(phrase, TINY_BODY_PARTS[i: i + 1 + i % 3])] = None
        drafts = AnswerDrafts(tokenizer(list(texts), add_special_tokens=False)["input_ids"])
        self._answer_drafts = (weakref.ref(tokenizer), drafts)
        return drafts

    def _decode_shared_prefix(self, tokenizer, images, queries, max_new_tokens, stop_ids, generate_kwargs,
                              draft_answers=True):
        logits_processor = generate_kwargs.pop("logits_processor", None)
        if generate_kwargs:
            raise TypeError(f"generate_contact's shared-prefix decoder takes only logits_processor, not "
                            f"{sorted(generate_kwargs)}; pass shared_prefix=False to use transformers' generate")
        distinct, image_of = unique_images(images)
        asked = sorted({image_of[q["image"]] for q in queries})  # images nobody asks about skip CLIP
        feature_row = {image: row for row, image in enumerate(asked)}
        clip = clip_preprocess([distinct[i] for i in asked], self.config.vlm_config.vision_config.image_size)
        features = self.image_features(clip.to(self.device))
        decoded = decode_shared_prefix(
            self.vlm.model.language_model, self.vlm.lm_head,
            lambda ids, rows: self.embed_rows(ids, features, rows),
            self._encode_prompts(tokenizer, queries), [feature_row[image_of[q["image"]]] for q in queries],
            max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            capture_ids=set(self.seg_token_ids), stop_token_ids=stop_ids, logits_processor=logits_processor,
            drafts=self.answer_drafts(tokenizer) if draft_answers and logits_processor is None else None)
        return decoded, image_of

    def _decode_with_generate(self, tokenizer, images, queries, max_new_tokens, stop_ids, generate_kwargs):
        """transformers' ``generate`` over the whole left-padded prompts (KV-cached, no shared prefix)."""
        device = self.device
        clip = clip_preprocess(images, self.config.vlm_config.vision_config.image_size).to(device)
        features = self.image_features(clip)
        encoded = self._encode_prompts(tokenizer, queries)
        width = max(len(e) for e in encoded)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)  # left padding
        attention_mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
        query_features = features[torch.tensor([q["image"] for q in queries], device=device)]
        embeds = self.embed_inputs(input_ids, query_features)
        if stop_ids:
            criteria = StoppingCriteriaList(generate_kwargs.pop("stopping_criteria", None) or [])
            criteria.append(StopAfterTokens(stop_ids))
            generate_kwargs["stopping_criteria"] = criteria
        # The final-norm output at the last position of each decoding step is the hidden state that predicts the
        # next token; a hook keeps just that instead of every layer's states (output_hidden_states).
        step_hidden: list[torch.Tensor] = []
        hook = self.vlm.model.language_model.norm.register_forward_hook(
            lambda module, args, output: step_hidden.append(output[:, -1].detach()))
        try:
            out = self.vlm.generate(
                inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens, do_sample=False,
                num_beams=1, return_dict_in_generate=True, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                **generate_kwargs,
            )
        finally:
            hook.remove()
        sequences = out.sequences[:, -len(step_hidden):] if out.sequences.shape[1] > len(step_hidden) else out.sequences
        seg_ids = set(self.seg_token_ids)
        tokens, hidden, found = [], [], []
        for b in range(len(queries)):
            row = answer_tokens(sequences[b].tolist(), tokenizer.eos_token_id, stop_ids)
            step = next((s for s, token in enumerate(row) if token in seg_ids), None)
            tokens.append(row)
            hidden.append(None if step is None else step_hidden[step][b])  # the step that *produced* the seg token
            found.append(None if step is None else row[step])
        return DecodedRows(tokens, hidden, found), self._query_templates(images, queries, list(range(len(images))))

    def decision_centred(self, vertex_probs: torch.Tensor | None, template) -> torch.Tensor | None:
        """Vertex probabilities as the model reports them: its validation-chosen threshold for the template's kind
        (human / object) moved to 0.5 (``model.calibration``; the identity for released models). Training losses
        use the raw probabilities."""
        if vertex_probs is None or getattr(template, "is_photo", False):
            return vertex_probs
        return centre_on_threshold(vertex_probs, decision_threshold(self.config, template.view_set.kind))

    def _predictions(self, tokenizer, decoded: DecodedRows,
                     templates: list[ViewTemplate | PhotoTemplate]) -> list[ContactPrediction]:
        """Masks and vertex probabilities from each query's seg hidden state (one prediction per query: its first seg
        token); an explicit empty prediction, with a warning, for answers without one."""
        device = self.device
        texts = [tokenizer.decode(tokens, skip_special_tokens=False).strip() for tokens in decoded.tokens]
        found = [b for b, h in enumerate(decoded.captured_hidden) if h is not None]
        masks, vertices = (None, None)
        if found:
            is_object = torch.tensor([decoded.captured_token[b] in self.object_token_ids() for b in found], device=device)
            masks, vertices = self.predict_from_hidden(torch.stack([decoded.captured_hidden[b] for b in found]),
                                                       [templates[b] for b in found], is_object)
        slot = {b: j for j, b in enumerate(found)}
        results: list[ContactPrediction] = []
        for b, template in enumerate(templates):
            if b in slot:
                results.append(ContactPrediction(texts[b], True, masks[slot[b]],
                                                 self.decision_centred(vertices[slot[b]], template)))
                continue
            warnings.warn(f"query {b}: the answer has no seg token ({texts[b]!r}); returning an empty prediction",
                          stacklevel=3)
            v, (m1, m2) = template.num_views, template.mask_size
            empty = None if template.is_photo else torch.zeros(template.num_vertices, device=device)
            results.append(ContactPrediction(texts[b], False, torch.full((v, m1, m2), -torch.inf, device=device), empty))
        return results


class StopAfterTokens(StoppingCriteria):
    """Finish each row of a ``generate`` batch once its last token is one of ``token_ids``."""

    def __init__(self, token_ids: set[int]) -> None:
        self.token_ids = sorted(token_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.isin(input_ids[:, -1], torch.tensor(self.token_ids, device=input_ids.device))


def unique_images(images: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """The distinct images (same shape, dtype and pixels count as one) and each input's index among them, so that a
    caller passing one photo per query still gets one CLIP pass and one shared prefix per photo."""
    seen: dict[tuple, int] = {}
    distinct, index = [], []
    for image in images:
        array = np.ascontiguousarray(image)
        key = (array.shape, array.dtype.str, hashlib.blake2b(array.tobytes(), digest_size=16).digest())
        if key not in seen:
            seen[key] = len(distinct)
            distinct.append(image)
        index.append(seen[key])
    return distinct, index
