"""evaluate.py and validation on every task: object contact (PICO layout), affordance (PIAD layout), human contact,
the joint [HSEG]/[OSEG] model on both sides; one prompt builder shared by training and evaluation; collapse flags."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

import evaluate
import tests.fixtures_datasets as fx
from datasets.collate import IGNORE_INDEX, Collator
from datasets.registry import build_dataset
from model.interactvlm import ContactPrediction
from model.io import save_interactvlm
from tests.conftest import make_tiny_model
from training.batches import model_inputs
from training.predict import predict_dataset
from training.templates import query_template
from training.validation import validate
from utils.chat_prompt import chat_prompt
from utils.conversation import HSEG_TOKEN, IM_START_TOKEN, OPENING_QUESTION, OSEG_TOKEN, SEG_TOKEN
from utils.metrics import eps_prf, piad_metrics
from training.recipes import Recipe


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    return fx.build_body_template(tmp_path_factory.mktemp("body64"))


@pytest.fixture()
def data(tmp_path, body):
    root = tmp_path / "data"
    fx.write_damon(root, body, root_name="synthcontact")
    fx.write_pico(root)
    fx.write_piad(root)
    return root


def _forward_truth(model, tokenizer, dataset):
    """Per-sample vertex probabilities of a teacher-forced pass, computed here without evaluate.py."""
    collator = Collator(tokenizer, model.config, training=False)
    samples = [dataset[i] for i in range(len(dataset))]
    with torch.no_grad():
        out = model(**model_inputs(model, collator(samples)))
    first = {}
    for k, b in enumerate(out.seg_batch_index.tolist()):
        first.setdefault(b, k)
    return samples, [out.vertex_probs[first[b]].float().numpy() for b in range(len(samples))]


# ------------------------------------------------------------------------------------------------------------ prompts
class _RecordingModel:
    """Stands in for the model in ``predict_dataset``: records the queries and answers "[SEG]" with empty masks."""

    def __init__(self, model) -> None:
        self.config, self.queries = model.config, []
        self._model = model

    def template(self, key):
        return self._model.template(key)

    def contact_prompts(self, tokenizer, images, asks, **kwargs):
        return self._model.contact_prompts(tokenizer, images, asks, **kwargs)

    def generate_contact(self, tokenizer, images, queries, **kwargs):
        self.queries += queries
        return [ContactPrediction(SEG_TOKEN, True, torch.zeros(4, 8, 8), torch.zeros(q["template"].num_vertices))
                for q in queries]


@pytest.mark.parametrize("use_im_start_end", [True, False])
def test_evaluation_prompt_is_the_collators_prompt_token_for_token(data, tiny_tokenizer, synthbody_template_128,
                                                                   use_im_start_end):
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, use_im_start_end=use_im_start_end)
    dataset = build_dataset("synthcontact_hcontact", data, "train", num_vertices=6997, training=False)
    recorder = _RecordingModel(model)
    predict_dataset(recorder, tiny_tokenizer, dataset, max_samples=3)
    batch = Collator(tiny_tokenizer, model.config, training=False)([dataset[i] for i in range(3)])
    im_start = tiny_tokenizer.convert_tokens_to_ids(IM_START_TOKEN)
    for b, query in enumerate(recorder.queries):
        # generate_contact encodes its prompt as [BOS] + tokens
        evaluation = [tiny_tokenizer.bos_token_id] + tiny_tokenizer(query["prompt"], add_special_tokens=False)["input_ids"]
        labels = batch["labels"][b].tolist()
        instruction = batch["input_ids"][b, : next(i for i, x in enumerate(labels) if x != IGNORE_INDEX)].tolist()
        assert evaluation == instruction  # the training sample's instruction, token for token
        assert (im_start in evaluation) == use_im_start_end
        assert query["prompt"] == chat_prompt(model.config, dataset[b]["question"])


def test_opening_turn_prompts_are_the_trained_conversation(data, tiny_tokenizer, synthbody_template_128):
    """An ``opening_turn`` model is asked "What is the person doing?" once per photo, and each task question follows
    its own answer to it: token for token the instruction of a training sample with that conversation. Affordance
    questions (no person) stay one turn."""
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, opening_turn=True)
    dataset = build_dataset("synthcontact_hcontact", data, "train", num_vertices=6997, training=False)
    opened = []
    generate_text = model.generate_text

    def said(tokenizer, images, queries, max_new_tokens=32):
        opened.append([q["image"] for q in queries])
        assert all(q["prompt"] == chat_prompt(model.config, OPENING_QUESTION) for q in queries)
        return [f"The person is sitting{i}." for i in range(len(queries))]

    model.generate_text = said
    recorder = _RecordingModel(model)
    results = predict_dataset(recorder, tiny_tokenizer, dataset, max_samples=5)
    assert opened == [[0, 1, 2]]  # five questions about three photos: three opening answers
    collator = Collator(tiny_tokenizer, model.config, training=True)
    photo = {path: i for i, path in enumerate(dict.fromkeys(s["image_path"] for s, _ in results))}
    for query, (sample, prediction) in zip(recorder.queries, results):
        opening = f"The person is sitting{photo[sample['image_path']]}."
        assert prediction.text.startswith(opening + " ")
        trained = dict(sample, conversation=[(OPENING_QUESTION, opening), (sample["question"], sample["answer"])])
        batch = collator([trained])
        labels = batch["labels"][0].tolist()
        answer_start = max(i for i, x in enumerate(labels) if x == IGNORE_INDEX and i + 1 < len(labels)
                           and labels[i + 1] != IGNORE_INDEX)  # the last instruction token
        ids = [tiny_tokenizer.bos_token_id] + tiny_tokenizer(query["prompt"], add_special_tokens=False)["input_ids"]
        assert ids == batch["input_ids"][0, : answer_start + 1].tolist()
        assert query["prompt"] == batch["generation_prompts"][0]
    # the model's own greedy text is the opening answer; an affordance question gets none
    model.generate_text = generate_text
    image = dataset[0]["image"]
    asks = [{"image": 0, "question": "Which body parts touch the chair?", "task": "hcontact"},
            {"image": 0, "question": "What can a chair afford?", "task": "oafford"}]
    (human, opening), (afford, none) = model.contact_prompts(tiny_tokenizer, [image], asks, max_new_tokens=4)
    own = generate_text(tiny_tokenizer, [image], [{"image": 0, "prompt": chat_prompt(model.config, OPENING_QUESTION)}],
                        max_new_tokens=4)[0]
    assert opening == own and human.endswith(f"{own}</s>USER: {asks[0]['question']} ASSISTANT:")
    assert none is None and afford == chat_prompt(model.config, asks[1]["question"])


class _Reordered:
    """A dataset read in another order, so that the questions about one photo are not neighbours."""

    def __init__(self, dataset, order: list[int]) -> None:
        self.dataset, self.order, self.name, self.task = dataset, order, dataset.name, dataset.task

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.order[i]]


class _AnswerSeg(LogitsProcessor):
    """An untrained model answers the seg token at once, so that every query has masks to compare."""

    def __init__(self, seg_token: int) -> None:
        self.seg_token = seg_token

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, -1e9)
        forced[:, self.seg_token] = 0
        return forced


@pytest.mark.parametrize("batch_size", [8, 2])
def test_predictions_grouped_by_photo_equal_one_call_per_sample_in_input_order(data, tiny_tokenizer,
                                                                             synthbody_template_128, batch_size):
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seed=5).eval()
    base = build_dataset("synthcontact_hcontact", data, "train", num_vertices=6997, training=False)
    assert [r.image_path.name for r in base.records] == ["img000.jpg", "img000.jpg", "img001.jpg", "img002.jpg",
                                                          "img002.jpg"]
    dataset = _Reordered(base, [0, 2, 3, 1, 4])  # photos 0, 1, 2, 0, 2
    calls = []
    generate = model.generate_contact

    def spy(tokenizer, images, queries, **kwargs):
        calls.append((len(images), [q["image"] for q in queries]))
        return generate(tokenizer, images, queries, **kwargs)

    model.generate_contact = spy
    answer_seg = LogitsProcessorList([_AnswerSeg(model.config.seg_token_index)])
    results = predict_dataset(model, tiny_tokenizer, dataset, batch_size=batch_size, logits_processor=answer_seg)
    # each photo's questions in one call, its image given once; a photo's questions are never split between calls
    assert calls == ([(3, [0, 0, 1, 2, 2])] if batch_size == 8 else [(1, [0, 0]), (1, [0]), (1, [0, 0])])
    assert [(s["image_path"], s["question"]) for s, _ in results] == [
        (dataset[i]["image_path"], dataset[i]["question"]) for i in range(len(dataset))]
    for sample, grouped in results:  # the ungrouped path: one sample, one image, one call
        query = {"image": 0, "prompt": chat_prompt(model.config, sample["question"]), "template": query_template(model, sample)}
        alone = generate(tiny_tokenizer, [sample["image"]], [query], logits_processor=answer_seg)[0]
        assert grouped.text == alone.text and grouped.found_seg and alone.found_seg
        torch.testing.assert_close(grouped.mask_logits, alone.mask_logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(grouped.vertex_probs, alone.vertex_probs, atol=1e-5, rtol=0)
    assert len({s["question"] for s, _ in results}) > 1  # different questions: the order check means something


# ------------------------------------------------------------------------------------------------- object contact
def test_object_contact_on_pico_layout_matches_a_direct_computation(data, tmp_path, tiny_tokenizer,
                                                                     synthbody_template_128):
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seed=3)
    model_dir = save_interactvlm(model, tiny_tokenizer, tmp_path / "model")
    report = evaluate.main(["--model-dir", str(model_dir), "--dataset", "pico_ocontact", "--split", "train",
                            "--dataset-dir", str(data), "--output-dir", str(tmp_path / "eval"), "--cpu",
                            "--mode", "forward", "--qualitative", "1"])
    assert report["kind"] == "object_contact" and report["task"] == "ocontact" and report["num_samples"] == 2
    dataset = evaluate.build_eval_dataset("pico_ocontact", evaluate.parse_args(["--dataset-dir", str(data),
                                                                              "--split", "train"]),
                                          evaluate.Method("m", model.config, model, tiny_tokenizer))
    samples, probs = _forward_truth(model, tiny_tokenizer, dataset)
    assert [len(p) for p in probs] == [30, 31]  # each PICO mesh has its own vertex count
    f1 = [float(eps_prf(p, s["vertex_labels"])["f1"][0]) for s, p in zip(samples, probs)]
    overall = report["semantic"]["overall"]
    assert overall["f1"] == pytest.approx(np.mean(f1), abs=1e-6)
    assert set(report["semantic"]["per_object"]) == {"tennis_racket", "chair"}
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["semantic"]["overall"]["f1"] == pytest.approx(overall["f1"])
    assert "object F1" in (tmp_path / "eval" / "results.md").read_text()
    assert (tmp_path / "eval" / "qualitative_00.jpg").is_file()


def test_affordance_on_piad_layout_matches_piad_metrics(data, tmp_path, tiny_tokenizer, synthbody_template_128):
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seed=4)
    model_dir = save_interactvlm(model, tiny_tokenizer, tmp_path / "model")
    report = evaluate.main(["--model-dir", str(model_dir), "--dataset", "piad_oafford", "--split", "test",
                            "--dataset-dir", str(data), "--output-dir", str(tmp_path / "eval"), "--cpu",
                            "--mode", "forward"])
    assert report["kind"] == "affordance" and report["num_samples"] == 1
    dataset = build_dataset("piad_oafford", data, "test", view_set=model.config.object_view_set,
                            mask_size=model.config.mask_size)
    samples, probs = _forward_truth(model, tiny_tokenizer, dataset)
    expected = piad_metrics(probs[0][None], samples[0]["vertex_labels"][None])
    for key in ("sim", "mae", "auc", "aiou"):
        assert report["semantic"]["overall"][key] == pytest.approx(expected[key], abs=1e-9), key
    assert "SIM" in (tmp_path / "eval" / "results.md").read_text()


def test_joint_model_scores_both_sides_with_its_own_tokens(data, tmp_path, tiny_tokenizer, synthbody_template_128):
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seed=5, token_type="Gen-Hu-Obj")
    model_dir = save_interactvlm(model, tiny_tokenizer, tmp_path / "joint")
    argv = ["--model-dir", str(model_dir), "--dataset", "synthcontact_hcontact", "pico_ocontact", "--split", "train",
            "--dataset-dir", str(data), "--output-dir", str(tmp_path / "eval"), "--cpu", "--mode", "forward",
            "--geodesic", "none", "--qualitative", "0"]
    reports = evaluate.main(argv)
    assert reports["synthcontact_hcontact"]["kind"] == "deco" and reports["pico_ocontact"]["kind"] == "object_contact"
    for name in ("synthcontact_hcontact", "pico_ocontact"):
        assert (tmp_path / "eval" / f"{name}_train" / "results.json").is_file()
    method = evaluate.Method("joint", model.config, model, tiny_tokenizer, human_template=model.template("human"))
    args = evaluate.parse_args(argv)
    assert HSEG_TOKEN in evaluate.build_eval_dataset("synthcontact_hcontact", args, method)[0]["answer"]
    assert OSEG_TOKEN in evaluate.build_eval_dataset("pico_ocontact", args, method)[0]["answer"]
    assert reports["synthcontact_hcontact"]["num_samples"] == 5  # the fixture's (image, object) pairs with contact


def test_a_2d_dataset_refuses_a_3d_model(data, tmp_path, tiny_tokenizer, synthbody_template_128):
    model_dir = save_interactvlm(make_tiny_model(tiny_tokenizer, synthbody_template_128), tiny_tokenizer, tmp_path / "m")
    fx.write_damon(data, fx.build_body_template(tmp_path / "b"), root_name="synthcontact", two_d=True)
    with pytest.raises(SystemExit, match="need a 2D model"):
        evaluate.main(["--model-dir", str(model_dir), "--dataset", "synthcontact_h2dcontact", "--split", "train",
                       "--dataset-dir", str(data), "--cpu"])


# ------------------------------------------------------------------------------------------- validation / selection
class _ScriptedModel(_RecordingModel):
    """Answers each (image, object) query with ``answer(gt labels)``: the truth, or one fixed mask for everything."""

    def __init__(self, model, dataset, answer) -> None:
        super().__init__(model)
        self.answer = answer
        self.truth = {}
        for i in range(len(dataset)):
            s = dataset[i]
            self.truth[(hashlib.sha1(s["image"].tobytes()).hexdigest(), s["class_name"])] = s["vertex_labels"]

    def generate_contact(self, tokenizer, images, queries, **kwargs):
        results = []
        for q in queries:
            key = hashlib.sha1(images[q["image"]].tobytes()).hexdigest()
            labels = next(v for (k, name), v in self.truth.items() if k == key and f"the {name}" in q["prompt"])
            results.append(ContactPrediction(SEG_TOKEN, True, torch.zeros(4, 8, 8), torch.as_tensor(self.answer(labels))))
        return results


def test_validation_scores_semantic_f1_and_flags_collapse(data, tiny_tokenizer, synthbody_template_128, capsys):
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128)
    dataset = build_dataset("synthcontact_hcontact", data, "train", num_vertices=6997, training=False)
    recipe = Recipe("t", "t", train=(), val=(), val_max_samples=None)
    truthful = validate(_ScriptedModel(model, dataset, lambda gt: gt), tiny_tokenizer, [dataset], recipe)
    assert truthful["synthcontact/score"] == pytest.approx(1.0) and truthful["synthcontact/collapsed"] == 0.0
    assert truthful["selection_score"] == pytest.approx(1.0)
    assert truthful["synthcontact/count"] == 3  # semantic F1 leaves 'supporting' out (DECO), 5 pairs -> 3

    feet = np.zeros(6997, np.float32)
    feet[:200] = 0.9
    with pytest.warns(UserWarning, match="collapsed"):
        constant = validate(_ScriptedModel(model, dataset, lambda gt: feet), tiny_tokenizer, [dataset], recipe)
    assert constant["synthcontact/collapsed"] == 1.0 and constant["synthcontact/mean_pairwise_iou"] == pytest.approx(1.0)
    assert constant["synthcontact/score"] < 0.5 and "collapsed" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ SynthContact objects
def _write_synthcontact_objects(root, split="test"):
    """SynthContact's object files for two images: a touched sphere each, an untouched box, the touched ground."""
    import pickle

    import trimesh

    split_dir = root / "synthcontact" / split
    (split_dir / "objects").mkdir(parents=True)
    stems = [f"{split}_000000", f"{split}_000001"]
    np.save(split_dir / "imgname.npy", np.array([f"images/{s}.jpg" for s in stems]))
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.1)
    box = trimesh.creation.box(extents=(0.4, 0.3, 0.2))
    ground = trimesh.creation.box(extents=(2.0, 0.02, 2.0))
    objects = {stems[0]: [("sports_ball", sphere, sphere.vertices[:, 1] > 0.05, "hold"),
                          ("box", box, np.zeros(len(box.vertices), bool), "none")],
               stems[1]: [("sports_ball", sphere, sphere.vertices[:, 0] < -0.05, "kick"),
                          ("supporting", ground, ground.vertices[:, 1] > 0, "stand_on")]}
    labels, lines = {}, []
    for k, (stem, items) in enumerate(objects.items()):
        fx.write_image(split_dir / "images" / f"{stem}.jpg", 70 + k)
        entries = []
        for name, mesh, contact, interaction in items:
            mesh.export(split_dir / "objects" / f"{stem}__{name}.ply")
            labels[f"{stem}__{name}"] = contact.astype(np.float32)
            entries.append({"name": name, "ply": f"objects/{stem}__{name}.ply", "interaction": interaction,
                            "object_contact_vertices": np.flatnonzero(contact).tolist()})
        lines.append(json.dumps({"stem": stem, "split": split, "imgname": f"images/{stem}.jpg", "objects": entries}))
    (split_dir / "meta.jsonl").write_text("\n".join(lines) + "\n")
    with open(split_dir / "object_contact.pkl", "wb") as handle:
        pickle.dump(labels, handle)
    return split_dir, labels


def test_synthcontact_object_contact_is_scored_per_mesh_vertex(tmp_path, tiny_tokenizer, synthbody_template_128):
    _, labels = _write_synthcontact_objects(tmp_path / "data")
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seed=6)
    model_dir = save_interactvlm(model, tiny_tokenizer, tmp_path / "model")
    report = evaluate.main(["--model-dir", str(model_dir), "--dataset", "synthcontact_ocontact", "--split", "test",
                            "--dataset-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "eval"), "--cpu",
                            "--mode", "forward", "--qualitative", "0"])
    assert report["kind"] == "object_contact" and report["num_samples"] == 2  # the two touched balls
    dataset = evaluate.build_eval_dataset("synthcontact_ocontact", evaluate.parse_args(
        ["--dataset-dir", str(tmp_path / "data"), "--split", "test"]), evaluate.Method("m", model.config, model, tiny_tokenizer))
    samples, probs = _forward_truth(model, tiny_tokenizer, dataset)
    np.testing.assert_array_equal(samples[0]["vertex_labels"], labels["test_000000__sports_ball"])
    expected = np.mean([eps_prf(p, s["vertex_labels"])["f1"][0] for s, p in zip(samples, probs)])
    assert report["semantic"]["overall"]["f1"] == pytest.approx(expected, abs=1e-6)
    assert set(report["semantic"]["per_object"]) == {"sports_ball"}


def test_no_prompt_is_built_outside_the_one_prompt_builder():
    """Every model prompt goes through utils.chat_prompt (a second builder once dropped use_im_start_end)."""
    from pathlib import Path

    root = Path(evaluate.__file__).resolve().parent
    # utils/conversation.py defines the text layout; model/tokenizer.py formats a corpus to fit the tiny vocabulary on
    allowed = {Path("utils/conversation.py"), Path("utils/chat_prompt.py"), Path("model/tokenizer.py")}
    offenders = []
    packages = [d for d in root.iterdir() if d.is_dir() and (d / "__init__.py").is_file() and d.name != "tests"]
    for path in [*root.glob("*.py"), *(f for d in packages for f in d.rglob("*.py"))]:
        rel = path.relative_to(root)
        if rel in allowed:
            continue
        if "build_prompt(" in path.read_text(encoding="utf-8", errors="replace"):
            offenders.append(str(rel))
    assert not offenders, f"build prompts with utils.chat_prompt.chat_prompt(config, question): {offenders}"


def test_combination_table_groups_per_sample_f1_by_pose_family_and_object(tmp_path):
    from utils.evaluation import main as evaluation_main

    meta = tmp_path / "meta.jsonl"
    meta.write_text("\n".join(json.dumps({"stem": s, "pose_family": f}) for s, f in
                              [("test_000000", "sitting"), ("test_000001", "stepping"), ("test_000002", "sitting")]))
    samples = [{"image_id": "/d/images/test_000000.jpg", "object": "box", "f1": 0.2},
               {"image_id": "/d/images/test_000001.jpg", "object": "box", "f1": 0.9},
               {"image_id": "/d/images/test_000002.jpg", "object": "box", "f1": 0.4}]
    report = {"kind": "deco", "semantic": {"per_sample": samples}}
    (tmp_path / "a.json").write_text(json.dumps(report))
    evaluation_main(["combinations", str(tmp_path / "t.md"), str(meta), f"model={tmp_path / 'a.json'}"])
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert "| sitting × box | 0.300 | 2 |" in lines and "| stepping × box | 0.900 | 1 |" in lines
    (tmp_path / "b.json").write_text(json.dumps({**report, "semantic": {"per_sample": [
        {**samples[0], "image_id": "/d/images/test_000009.jpg"}]}}))
    with pytest.raises(KeyError, match="test_000009"):
        evaluation_main(["combinations", str(tmp_path / "t.md"), str(meta), f"model={tmp_path / 'b.json'}"])
