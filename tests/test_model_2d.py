"""The 2D contact model (``h2dcontact``): SAM on the photo, V = 1, masks in the photo's frame, no lifting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

import evaluate
import model.interactvlm as interactvlm_module
from datasets import Damon2DDataset
from datasets.collate import Collator
from datasets.io import DatasetFormatError
from model.config import build_config
from model.interactvlm import InteractVLMForCausalLM, clip_preprocess
from model.io import attach_tokenizer, load_interactvlm, save_interactvlm
from model.lora import apply_lora
from model.view_templates import PhotoTemplate
from tests import fixtures_datasets as fx
from tests.test_model import IMAGES, ForceAnswer, _answer_ids, _encode, _prompt
from training import baselines
from training.batches import model_inputs, sample_losses
from training.build import warm_start
from training.templates import check_model_kind
from utils.evaluation import markdown_table
from utils.metrics import pixel_contact_metrics


def make_2d_model(tokenizer, seed: int = 0, **overrides) -> InteractVLMForCausalLM:
    torch.manual_seed(seed)
    values = dict(contact_2d=True, num_views=1, cam_encoder_type="none", train_sam_encoder=True)
    values.update(overrides)
    config = build_config("tiny", **values)
    attach_tokenizer(config, tokenizer)
    return InteractVLMForCausalLM(config).eval()


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    return fx.build_body_template(tmp_path_factory.mktemp("body64"))


@pytest.fixture()
def model_2d(tiny_tokenizer):
    return make_2d_model(tiny_tokenizer)


def test_config_rules(tiny_tokenizer):
    with pytest.raises(ValueError, match="num_views must be 1"):
        make_2d_model(tiny_tokenizer, num_views=4)
    with pytest.raises(ValueError, match="train_sam_encoder is for 2D models"):
        make_2d_model(tiny_tokenizer, contact_2d=False, num_views=4, train_sam_encoder=True)


def test_generation_matches_teacher_forcing_in_the_photo_frame(model_2d, tiny_tokenizer):
    model, tok = model_2d, tiny_tokenizer
    prompt = _prompt(model, answer=False)
    answer = _answer_ids(tok, model)
    length = _encode(tok, prompt).shape[1]
    single = []
    for i, image in enumerate(IMAGES):  # 96x150 and 120x80: masks come back at the photo's own size
        [res] = model.generate_contact(tok, IMAGES, [{"image": i, "prompt": prompt}], max_new_tokens=40,
                                       logits_processor=LogitsProcessorList([ForceAnswer([answer], length)]))
        assert res.found_seg and res.is_2d and res.vertex_probs is None
        assert res.mask_logits.shape == (1, *image.shape[:2])
        full = torch.cat([_encode(tok, prompt), torch.tensor([answer])], dim=1)
        forward = model(input_ids=full, clip_pixel_values=clip_preprocess([image], 112),
                        templates=[PhotoTemplate.from_image(image, model.config.sam_image_size)])
        torch.testing.assert_close(forward.mask_logits[0], res.mask_logits, atol=1e-4, rtol=1e-4)
        assert forward.vertex_probs == [None]
        single.append(res)
    # both photos in one batch: different sizes, so masks come back one per query
    batch = model.generate_contact(tok, IMAGES, [{"image": i, "prompt": prompt} for i in range(2)], max_new_tokens=40,
                                   logits_processor=LogitsProcessorList([ForceAnswer([answer, answer], length)]))
    for one, many in zip(single, batch):
        torch.testing.assert_close(one.mask_logits, many.mask_logits, atol=1e-3, rtol=1e-3)


def test_masks_are_aligned_with_the_photo(model_2d, monkeypatch):
    """Replace the mask decoder by "the photo's red channel at low resolution": padding, crop and resize must bring
    it back onto the photo pixel for pixel (up to interpolation blur)."""
    model = model_2d
    size = model.config.sam_image_size
    photo = np.zeros((90, 160, 3), np.uint8)
    photo[20:50, 30:100, 0] = 255  # a red rectangle
    template = PhotoTemplate.from_image(photo, size)
    assert template.input_size == (72, 128) and template.mask_size == (90, 160)

    def red_channel(sam, embeddings, prompts, per_view_tokens=False):
        red = template.pixel_values[:, :1].to(prompts.dtype)  # normalised, padded with 0 outside the photo
        low = torch.nn.functional.interpolate(red, size=(size // 4, size // 4), mode="area")
        return low.reshape(1, 1, size // 4, size // 4).expand(len(prompts), 1, -1, -1)

    monkeypatch.setattr(interactvlm_module, "decode_views", red_channel)
    masks, vertices = model.predict_from_hidden(torch.randn(1, model.config.text_hidden_size), [template])
    assert vertices == [None] and masks.shape == (1, 1, 90, 160)
    inside = masks[0, 0] > masks[0, 0].min() + 0.5 * (masks[0, 0].max() - masks[0, 0].min())
    expected = np.zeros((90, 160), bool)
    expected[20:50, 30:100] = True
    iou = (inside.numpy() & expected).sum() / (inside.numpy() | expected).sum()
    assert iou > 0.85, iou


def test_sam_encoder_trains_only_on_photos(model_2d, tiny_tokenizer):
    model = apply_lora(model_2d, use_lora=False).train()
    assert all(p.requires_grad for n, p in model.named_parameters() if "sam.vision_encoder." in n)
    ids = _encode(tiny_tokenizer, _prompt(model))
    out = model(input_ids=ids, clip_pixel_values=clip_preprocess(IMAGES[:1], 112), labels=ids,
                templates=[PhotoTemplate.from_image(IMAGES[0], model.config.sam_image_size)])
    (out.loss + out.mask_logits.sigmoid().mean()).backward()
    encoder_grads = [p.grad for n, p in model.named_parameters() if "sam.vision_encoder." in n]
    assert all(g is not None for g in encoder_grads) and sum(float(g.abs().sum()) for g in encoder_grads) > 0
    for key in ("mask_decoder", "text_hidden_fcs"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if key in n), key
    # in eval mode the encoder runs without a graph
    model.eval()
    with torch.enable_grad():
        emb = model.view_embeddings(PhotoTemplate.from_image(IMAGES[0], model.config.sam_image_size))
    assert not emb.requires_grad


def test_wrong_model_kind_is_an_error(model_2d, tiny_model, tiny_tokenizer):
    ids = _encode(tiny_tokenizer, _prompt(model_2d))
    with pytest.raises(ValueError, match="2D model segments each sample's photo"):
        model_2d(input_ids=ids, clip_pixel_values=clip_preprocess(IMAGES[:1], 112))
    with pytest.raises(ValueError, match="need a 2D model"):
        check_model_kind(tiny_model, "image")
    with pytest.raises(ValueError, match="need a 3D model"):
        check_model_kind(model_2d, "human")


def test_save_load_round_trip(model_2d, tiny_tokenizer, tmp_path):
    save_interactvlm(model_2d, tiny_tokenizer, tmp_path / "m2d")
    loaded, _ = load_interactvlm(tmp_path / "m2d")
    assert loaded.config.contact_2d and not loaded.templates
    hidden = torch.randn(1, model_2d.config.text_hidden_size)
    template = PhotoTemplate.from_image(IMAGES[1], model_2d.config.sam_image_size)
    torch.testing.assert_close(model_2d.predict_from_hidden(hidden, [template])[0],
                               loaded.predict_from_hidden(hidden, [template])[0])


def test_2d_dataset_collate_and_loss(tmp_path, body, model_2d, tiny_tokenizer):
    fx.write_damon(tmp_path, body, two_d=True)
    ds = Damon2DDataset(tmp_path, "train", num_vertices=body.num_vertices, mask_size=14, training=True)
    samples = [ds[0], ds[1]]
    assert samples[0]["masks"].shape == (1, 10, 14)  # 20x28 photo: longest side 14, aspect kept
    batch = Collator(tiny_tokenizer, model_2d.config, training=True)(samples)
    assert [tuple(m.shape) for m in batch["masks"]] == [(1, 10, 14), (1, 10, 14)]
    photo = batch["photos"][0]
    assert photo.pixel_values.shape == (1, 3, 128, 128) and photo.mask_size == (10, 14)
    model = apply_lora(model_2d, use_lora=False).train()
    out = model(**model_inputs(model, batch))
    total, parts = sample_losses(model, out, batch)
    assert torch.isfinite(total) and parts
    total.backward()


def test_mask_size_must_match_the_photo(tmp_path, body):
    written = fx.write_damon(tmp_path, body, two_d=True)
    ds = Damon2DDataset(tmp_path, "train", num_vertices=body.num_vertices, training=False)
    record = ds.records[0]
    fx.write_png(record.mask_paths[0], np.zeros((7, 7), np.uint8))
    with pytest.raises(DatasetFormatError, match="must match it"):
        ds[0]
    assert written


def test_pixel_metrics_by_hand():
    logits = [np.where(np.eye(4, dtype=bool), 5.0, -5.0), np.full((2, 3), -5.0), np.full((2, 2), 5.0)]
    gts = [np.pad(np.ones((2, 2)), ((0, 2), (0, 2))), np.zeros((2, 3)), np.array([[1, -1], [0, 0]])]
    m = pixel_contact_metrics(logits, gts)
    # image 0: pred diag (4 px), gt top-left 2x2 (4 px), tp 2 → P .5 R .5 F1 .5; IoU 2/6
    # image 1: nothing predicted → DECO (1, 0, 0); IoU 1 (empty/empty)
    # image 2: 3 valid px predicted, gt 1 → P 1/3 R 1 F1 .5; IoU 1/3
    np.testing.assert_allclose(m["per_image_precision"], [0.5, 1.0, 1 / 3])
    np.testing.assert_allclose(m["per_image_recall"], [0.5, 0.0, 1.0])
    np.testing.assert_allclose(m["per_image_f1"], [0.5, 0.0, 0.5])
    assert m["giou"] == pytest.approx((2 / 6 + 1 + 1 / 3) / 3, abs=1e-4)
    assert m["ciou"] == pytest.approx(3 / 9, abs=1e-6) and m["count"] == 3


def test_evaluate_scores_a_2d_model_on_pixels(tmp_path, body, model_2d, tiny_tokenizer):
    fx.write_damon(tmp_path / "data", body, root_name="synthcontact", two_d=True)  # the 6997-vertex body
    model_dir = save_interactvlm(model_2d, tiny_tokenizer, tmp_path / "m2d")
    report = evaluate.main(["--model-dir", str(model_dir), "--dataset", "synthcontact_h2dcontact", "--split", "train",
                            "--dataset-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "eval"), "--cpu",
                            "--qualitative", "2", "--mode", "forward"])
    assert report["kind"] == "pixels" and report["num_samples"] == 5
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    overall = saved["semantic"]["overall"]
    assert set(overall) >= {"f1", "precision", "recall", "giou", "ciou"}
    # the same F1 computed here from a forward pass over the dataset evaluate.py read
    args = evaluate.parse_args(["--dataset-dir", str(tmp_path / "data"), "--split", "train"])
    dataset = evaluate.build_eval_dataset("synthcontact_h2dcontact", args,
                                          evaluate.Method("m", model_2d.config, model_2d, tiny_tokenizer))
    samples = [dataset[i] for i in range(len(dataset))]
    batch = Collator(tiny_tokenizer, model_2d.config, training=False)(samples)
    with torch.no_grad():
        out = model_2d(**model_inputs(model_2d, batch))
    first = {}
    for k, b in enumerate(out.seg_batch_index.tolist()):
        first.setdefault(b, k)
    preds = [out.mask_logits[first[b]][0].float().numpy() for b in range(len(samples))]
    direct = pixel_contact_metrics(preds, [s["masks"][0] for s in samples])
    assert overall["f1"] == pytest.approx(direct["f1"], abs=1e-6)
    assert overall["giou"] == pytest.approx(direct["giou"], abs=1e-6)
    assert (tmp_path / "eval" / "qualitative_00.jpg").is_file() and (tmp_path / "eval" / "pr_curve.png").is_file()
    assert "pixel F1" in markdown_table({"m": saved})
    with pytest.raises(ValueError, match="cannot mix"):
        markdown_table({"m": saved, "v": {"kind": "deco"}})


def test_warm_start_copies_what_fits(tiny_model, tiny_tokenizer, tmp_path):
    source_dir = save_interactvlm(tiny_model, tiny_tokenizer, tmp_path / "m3d")
    model = make_2d_model(tiny_tokenizer, seed=11)
    counts = warm_start(model, source_dir)
    assert counts["copied"] > 100 and counts["skipped"] > 0  # the 3D model's per-view camera gates have no place here
    ours, theirs = model.state_dict(), tiny_model.state_dict()
    for key in ("vlm.lm_head.weight", "text_hidden_fcs.2.weight", "sam.mask_decoder.iou_token.weight"):
        assert torch.equal(ours[key], theirs[key]), key
    assert not any(k.startswith("cam_pose_encoder") for k in ours)
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        warm_start(model, tmp_path)


def test_mask_prior_baseline(tmp_path, body):
    fx.write_damon(tmp_path / "data", body, root_name="synthcontact", two_d=True)
    out = tmp_path / "prior2d.npz"
    baselines.main(["train", "--kind", "prior2d", "--dataset", "synthcontact_h2dcontact", "--dataset-dir",
                    str(tmp_path / "data"), "--output", str(out), "--mask-size", "14"])
    prior = baselines.MaskPrior.load(out)
    # every fixture mask is the same centred rectangle: the prior reproduces it, at any size
    probs = prior("chair", (20, 28))
    assert probs.shape == (20, 28) and probs[10, 14] >= 0.5 and probs[0, 0] < 0.5
    report = evaluate.main(["--baseline", "prior2d", "--baseline-path", str(out), "--dataset", "synthcontact_h2dcontact",
                            "--split", "train", "--dataset-dir", str(tmp_path / "data"), "--mask-size", "14",
                            "--output-dir", str(tmp_path / "eval"), "--cpu"])
    assert report["kind"] == "pixels" and report["semantic"]["overall"]["f1"] > 0.9
    with pytest.raises(ValueError, match="not a 2D mask prior"):
        np.savez(tmp_path / "other.npz", names=np.array(["a"]))
        baselines.MaskPrior.load(tmp_path / "other.npz")


def test_mask_prior_threshold_is_pixel_f1s_best(tmp_path):
    """The streamed fit (pixel counts only, masks read on demand) picks the threshold that the held-in-memory
    metric, utils.metrics.pixel_contact_metrics, scores best, on masks of mixed sizes with ignored pixels."""
    from utils.metrics import logit, pixel_contact_metrics

    rng = np.random.default_rng(3)
    names, masks = [], []
    for i in range(40):
        h, w = (30, 40) if i % 2 else (36, 24)
        mask = np.zeros((h, w), dtype=np.float32)
        y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
        mask[y: y + rng.integers(2, 7), x: x + rng.integers(2, 7)] = 1
        mask[:, :2] = -1
        names.append("chair" if i % 3 else "bottle")
        masks.append(mask)
    reads = []
    prior = baselines.MaskPrior.fit(names, lambda i: reads.append(i) or masks[i])
    assert len(reads) == 2 * len(masks)  # two passes, nothing kept
    thresholds = np.geomspace(0.005, 0.5, 25)
    logits = [logit(baselines._resize(prior.per_class[n], m.shape, "linear")) for n, m in zip(names, masks)]
    scores = [pixel_contact_metrics(logits, masks, threshold=float(t))["f1"] for t in thresholds]
    assert prior.threshold == pytest.approx(float(thresholds[int(np.argmax(scores))]))
    assert baselines.MaskPrior.fit(names, masks).threshold == prior.threshold  # a list works as before
