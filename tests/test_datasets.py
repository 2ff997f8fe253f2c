"""Dataset readers on tiny copies of the release layouts (tests/fixtures_datasets.py)."""

from __future__ import annotations

import numpy as np
import pytest

from datasets import (Damon2DDataset, DamonDataset, DatasetFormatError, LemonHumanDataset, LemonObjectDataset,
                      PicoDataset, PiadDataset, RichDataset, VQADataset, build_dataset)
from datasets.io import read_image
from tests import fixtures_datasets as fx
from utils.conversation import make_qa
from utils.geometry.projection import training_targets

SAMPLE_KEYS = {"image_path", "image", "task", "dataset", "class_name", "question", "answer", "conversation",
               "body_parts", "template", "masks", "vertex_labels", "meta"}


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    return fx.build_body_template(tmp_path_factory.mktemp("body64"))


def check_sample(sample, task):
    assert set(sample) >= SAMPLE_KEYS
    assert sample["task"] == task
    image = sample["image"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert sample["conversation"][0] == (sample["question"], sample["answer"])
    if sample["masks"] is not None:
        assert sample["masks"].dtype == np.float32 and sample["masks"].ndim == 3
    if sample["vertex_labels"] is not None:
        assert sample["vertex_labels"].dtype == np.float32 and sample["vertex_labels"].ndim == 1


# ------------------------------------------------------------------------------------------------------------------
# DAMON / SynthContact


def damon(tmp_path, body, **kwargs):
    kwargs.setdefault("valid_mask", body.views.valid)
    kwargs.setdefault("num_vertices", body.num_vertices)
    return DamonDataset(tmp_path, kwargs.pop("split", "train"), **kwargs)


def test_damon_samples_masks_and_labels(tmp_path, body):
    written = fx.write_damon(tmp_path, body)
    ds = damon(tmp_path, body, training=False)
    # (image, object) pairs with contact: chair, cup | supporting | bench, supporting; tennis_racket has no contact
    assert [(r.meta["stem"], r.class_name) for r in ds.records] == [
        ("img000", "chair"), ("img000", "cup"), ("img001", "supporting"), ("img002", "bench"), ("img002", "supporting")]
    assert ds.skipped == {"no contact": 1}
    for i, record in enumerate(ds.records):
        sample = ds[i]
        check_sample(sample, "hcontact")
        obj, stem = record.meta["object"], record.meta["stem"]
        ids = written["objectwise"][int(stem[3:])][obj]
        assert sample["image_path"].endswith(f"damon/train/images/{stem}.jpg")  # basename of the long DAMON path
        assert sample["dataset"] == "damon" and sample["template"] == "human"
        assert sample["body_parts"] == written["parts"][f"{stem}_{obj}"]
        expected_labels = np.zeros(body.num_vertices, np.float32)
        expected_labels[ids] = 1
        np.testing.assert_array_equal(sample["vertex_labels"], expected_labels)
        # masks = the 3D labels projected with min_vertices=2 (mv2), −1 outside the body template
        np.testing.assert_array_equal(sample["masks"], training_targets(expected_labels, body.views.maps, 2))
        assert (sample["masks"] == 1).any()
        # evaluation: the first (inference) template of utils.conversation
        qa = make_qa("hcontact", obj, "parts", body_parts=sample["body_parts"])
        assert (sample["question"], sample["answer"]) == (qa.question, qa.answer)
        assert sample["answer"].count("[SEG]") == 1


def test_synthcontact_layout_is_read_unchanged(tmp_path, body):
    fx.write_damon(tmp_path, body, root_name="synthcontact", split="val", long_names=False)
    ds = DamonDataset(tmp_path, "val", view_set="4MV-Z_Vitru_mv2", num_vertices=6997, root_name="synthcontact",
                      valid_mask=body.folder)  # the template folder: its valid region is loaded at the masks' size
    assert len(ds) == 5 and ds.name == "synthcontact" and not ds.training
    sample = ds[0]
    assert sample["dataset"] == "synthcontact" and sample["vertex_labels"].shape == (6997,)
    assert ((sample["masks"] == -1) == ~body.views.valid).all()
    # a wrong vertex count is caught from contact_label.npy, naming the file
    with pytest.raises(DatasetFormatError, match="contact_label.npy.*6890"):
        DamonDataset(tmp_path, "val", num_vertices=6890, root_name="synthcontact")


def test_damon_foot_ground_and_supporting(tmp_path, body):
    fx.write_damon(tmp_path, body, foot_ground=True, view_set="4MV-Z_Vitru_FootGround")
    fx.write_damon(tmp_path, body, split="test", view_set="4MV-Z_Vitru_FootGround")
    ds = damon(tmp_path, body, view_set="4MV-Z_Vitru_FootGround", valid_mask=None)
    names = [r.class_name for r in ds.records]
    assert "supporting" not in names and names.count("scene") == 2  # foot_ground → scene; supporting ignored
    assert ds.skipped["supporting dropped"] == 2
    scene = next(r for r in ds.records if r.class_name == "scene")
    assert scene.meta["object"] == "foot_ground" and "/foot_ground/" in str(scene.mask_paths[0])
    assert "left calf" in ds.records[-1].body_parts  # copied from "supporting" (the original's behaviour) …
    fixed = damon(tmp_path, body, view_set="4MV-Z_Vitru_FootGround", part_segmentation=body.segmentation)
    assert set(fixed.records[-1].body_parts) == {"left foot", "right foot"}  # … or recomputed from its own vertices
    # a template folder rendered for another human view set (same cameras) gives the valid region, at mask_size
    small = damon(tmp_path, body, view_set="4MV-Z_Vitru_FootGround", valid_mask=body.folder, mask_size=32)
    masks = small[len(small) - 1]["masks"]
    assert masks.shape == (4, 32, 32) and ((masks == -1) == ~body.views.valid[:, ::2, ::2]).all()
    assert (masks == 1).any()
    # the test split always reads the plain object-wise files
    test = damon(tmp_path, body, split="test", view_set="4MV-Z_Vitru_FootGround", supporting="keep")
    assert "scene" not in [r.class_name for r in test.records] and "supporting" in [r.class_name for r in test.records]


def test_damon_missing_masks_skip_pair_and_train_fraction(tmp_path, body):
    written = fx.write_damon(tmp_path, body)
    (written["root"] / "hcontact_vitruvian_mv2" / "cup" / "img000_bottomback.png").unlink()
    ds = damon(tmp_path, body)
    assert [r.class_name for r in ds.records] == ["chair", "supporting", "bench", "supporting"]
    assert ds.skipped["masks missing"] == 1
    half = [r.meta["stem"] + r.class_name for r in damon(tmp_path, body, train_fraction=0.5).records]
    assert len(half) == 2 and half == [r.meta["stem"] + r.class_name for r in damon(tmp_path, body, train_fraction=0.5).records]
    others = {tuple(r.meta["stem"] + r.class_name for r in damon(tmp_path, body, train_fraction=0.5, fraction_seed=s).records)
              for s in range(10)}
    assert len(others) > 1  # the seed matters (and only the fraction's own RNG is used)


def test_damon_per_sample_rng_is_deterministic(tmp_path, body):
    fx.write_damon(tmp_path, body)
    ds = damon(tmp_path, body, body_part_dropout=0.5, seed=3)
    record = ds.records[0]

    def qa(index, epoch, dataset=ds):
        dataset.set_epoch(epoch)
        return dataset.question_answer(record, dataset.rng(index))

    first = qa(0, 0)
    other_draws = [qa(3, 1), ds[2]["question"]]  # other samples and epochs drawn in between change nothing
    assert qa(0, 0) == first and other_draws
    fresh = damon(tmp_path, body, body_part_dropout=0.5, seed=3)  # a new reader with the same seed: the same texts
    assert [fresh[i]["question"] for i in range(len(fresh))] == [ds[i]["question"] for i in range(len(ds))]
    draws = [qa(0, e) for e in range(400)]
    assert len(set(draws)) > 5  # templates vary across epochs
    simple = sum("hips" not in answer for _, answer in draws)
    assert 0.4 < simple / len(draws) < 0.6  # body-part dropout at the requested rate
    same_seed = damon(tmp_path, body, body_part_dropout=0.5, seed=3)
    assert [qa(i, 7) for i in range(5)] == [qa(i, 7, same_seed) for i in range(5)]
    eval_ds = damon(tmp_path, body, body_part_dropout=1.0, training=False)
    assert all("hips" in eval_ds.question_answer(record, eval_ds.rng(i))[1] for i in range(20))  # no dropout in eval


def test_damon_errors_name_the_file(tmp_path, body):
    written = fx.write_damon(tmp_path, body)
    root = written["root"]
    with pytest.raises(FileNotFoundError, match="body_parts_objectwise.pkl"):
        (root / "body_parts_objectwise.pkl").rename(root / "moved.pkl")
        damon(tmp_path, body)
    (root / "moved.pkl").rename(root / "body_parts_objectwise.pkl")

    fx.write_pickle(root / "contact_label_objectwise.pkl", written["objectwise"][:2])
    with pytest.raises(DatasetFormatError, match="contact_label_objectwise.pkl: 2 entries.*3 images"):
        damon(tmp_path, body)
    fx.write_pickle(root / "contact_label_objectwise.pkl", {"not": "a list"})
    with pytest.raises(DatasetFormatError, match="contact_label_objectwise.pkl: expected a list"):
        damon(tmp_path, body)
    fx.write_pickle(root / "contact_label_objectwise.pkl", written["objectwise"])

    parts = dict(written["parts"])
    del parts["img000_cup"]
    fx.write_pickle(root / "body_parts_objectwise.pkl", parts)
    with pytest.raises(DatasetFormatError, match="body_parts_objectwise.pkl: no body parts for key 'img000_cup'"):
        damon(tmp_path, body)
    fx.write_pickle(root / "body_parts_objectwise.pkl", written["parts"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    fx.write_pickle(root / "body_parts_objectwise.pkl", Evil())
    with pytest.raises(DatasetFormatError, match="body_parts_objectwise.pkl: cannot read"):
        damon(tmp_path, body)
    fx.write_pickle(root / "body_parts_objectwise.pkl", written["parts"])

    ds = damon(tmp_path, body)
    mask = root / "hcontact_vitruvian_mv2" / "chair" / "img000_topback.png"
    mask.write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match="img000_topback.png: not a readable image"):
        ds[0]
    fx.write_png(mask, np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetFormatError, match="masks differ in size"):
        ds[0]
    (root / "images" / "img002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="img002.jpg not found"):
        ds[3]
    with pytest.raises(IndexError):
        ds[len(ds)]
    sample = ds[1]  # other samples are unaffected: nothing falls back to another sample
    assert sample["image_path"] == str(ds.records[1].image_path) and sample["class_name"] == ds.records[1].class_name
    np.testing.assert_array_equal(sample["vertex_labels"], ds.vertex_labels(ds.records[1]))
    for path in (root / "imgname.npy",):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="imgname.npy not found: expected the \\[N\\] image names"):
        damon(tmp_path, body)


def test_damon_object_array_imgname(tmp_path, body):
    written = fx.write_damon(tmp_path, body)
    np.save(written["root"] / "imgname.npy", np.array(written["names"], dtype=object), allow_pickle=True)
    assert len(damon(tmp_path, body)) == 5  # read through the restricted unpickler


def test_damon_2d(tmp_path, body):
    fx.write_damon(tmp_path, body, two_d=True)
    ds = Damon2DDataset(tmp_path, "train", num_vertices=body.num_vertices, training=False)
    assert [r.class_name for r in ds.records] == ["chair", "cup", "support object or ground", "bench",
                                                  "support object or ground"]
    sample = ds[2]
    check_sample(sample, "h2dcontact")
    assert "support object or ground" in sample["question"] and sample["template"] == "image"
    assert sample["masks"].shape == (1, 20, 28) and set(np.unique(sample["masks"])) == {0.0, 1.0}
    assert sample["vertex_labels"] is None


# ------------------------------------------------------------------------------------------------------------------
# LEMON, RICH


def test_lemon_human(tmp_path, body):
    written = fx.write_lemon_human(tmp_path, body, split="val")
    ds = LemonHumanDataset(tmp_path, "test", num_vertices=body.num_vertices, valid_mask=body.views.valid)
    assert len(ds) == 2 and not ds.training
    for i, (obj, aff, stem, parts) in enumerate(written["items"]):
        sample = ds[i]
        check_sample(sample, "hcontact")
        assert sample["class_name"] == obj and sample["body_parts"] == list(parts)
        assert sample["image_path"].endswith(f"lemon/Images/{obj}/{aff}/{stem}.jpg")
        assert obj.lower() in sample["question"]
        labels = np.zeros(body.num_vertices, np.float32)
        labels[body.contact(*parts)] = 1
        np.testing.assert_array_equal(sample["vertex_labels"], labels)
        np.testing.assert_array_equal(sample["masks"], training_targets(labels, body.views.maps, 2))
    fx.write_pickle(written["root"] / "smplh_contact_pkl" / "Bag" / "carry" / "Bag_carry_001.pkl", np.zeros(5))
    with pytest.raises(DatasetFormatError, match="Bag_carry_001.pkl: expected the contact array of length 6997"):
        ds[0]


def test_rich(tmp_path, body):
    written = fx.write_rich(tmp_path, body)
    ds = RichDataset(tmp_path, "train", num_vertices=body.num_vertices, valid_mask=body.views.valid)
    assert len(ds) == 2 and ds.skipped == {"no contact": 1}
    sample = ds[1]
    check_sample(sample, "hcontact")
    assert sample["class_name"] == "scene" and "scene" in sample["question"]
    np.testing.assert_array_equal(sample["vertex_labels"], written["contacts"][written["keys"][1]])
    assert sample["masks"].shape == (4, 64, 64) and (sample["masks"] == -1).any() and (sample["masks"] == 1).any()
    with pytest.raises(DatasetFormatError, match="body_parts_train.pkl: no entry for key"):
        fx.write_pickle(written["root"] / "body_parts_train.pkl", {})
        RichDataset(tmp_path, "train", num_vertices=body.num_vertices)


# ------------------------------------------------------------------------------------------------------------------
# PIAD, LEMON object, PICO


def test_piad_training_candidates(tmp_path):
    written = fx.write_piad(tmp_path)
    ds = PiadDataset(tmp_path, "train")
    assert ds.name == "piad_seen" and ds.pairing == "lookup" and len(ds) == 2
    # Chair's second candidate has no renders: only the first is usable
    assert [p.name for p in ds.records[1].candidates] == ["Point_Train_Chair_1.txt"]
    for i, (obj, aff, stem) in enumerate((("Bag", "open", "Point_Train_Bag_2"), ("Chair", "sit", "Point_Train_Chair_1"))):
        sample = ds[i]
        check_sample(sample, "oafford")
        assert (sample["class_name"], sample["meta"]["affordance"]) == (obj, aff)
        assert sample["meta"]["template_stem"] == stem  # Bag_1 has an all-zero "open" column: the next one is used
        assert sample["template"].endswith(f"rendered_points_heatmap_1025_color/Train/{obj}/{aff}")
        points, table = written["clouds"][stem]
        column = written["open"] if aff == "open" else written["sit"]
        np.testing.assert_allclose(sample["vertex_labels"], table[:, column], atol=1e-4)
        np.testing.assert_allclose(sample["meta"]["points"], points, atol=1e-4)
        masks = sample["masks"]
        assert masks.shape == (4, 32, 32)
        valid = masks >= 0
        assert (~valid).any() and valid.any() and masks[valid].max() <= 1 and len(np.unique(masks[valid])) > 3  # soft
        assert len(sample["meta"]["lift_map_paths"]) == 4
    assert ds.records[0].candidates[0].name == "Point_Train_Bag_1.txt"  # the ranking itself is never modified


def test_piad_random_ranking_is_per_sample_and_does_not_mutate(tmp_path):
    fx.write_piad(tmp_path)
    ds = PiadDataset(tmp_path, "train", ranking="random", max_candidates=1)
    before = ds.records[0].candidates
    chosen = []
    for epoch in range(30):
        ds.set_epoch(epoch)
        try:
            chosen.append(ds.choose_candidate(ds.records[0], ds.rng(0)).meta["template_stem"])
        except DatasetFormatError as err:  # drew the all-zero candidate first and may try only one
            assert "Point_Train_Bag_1.txt" in str(err) and "non-zero 'open' column" in str(err)
            chosen.append(None)
    assert ds.records[0].candidates == before
    assert set(chosen) == {"Point_Train_Bag_2", None}  # both orders occur across epochs
    epoch = chosen.index("Point_Train_Bag_2")
    ds.set_epoch(epoch)
    assert ds[0]["meta"]["template_stem"] == "Point_Train_Bag_2"  # and an epoch's order is reproducible


def test_piad_test_split_and_unseen(tmp_path):
    fx.write_piad(tmp_path)
    ds = PiadDataset(tmp_path, "test")
    assert ds.pairing == "aligned" and not ds.training and len(ds) == 1
    sample = ds[0]
    assert sample["meta"]["template_stem"] == "Point_Test_Bag_1"
    assert sample["answer"] == make_qa("oafford", "Bag", "afford", affordance="open").answer
    with pytest.raises(FileNotFoundError, match="piad_ocontact_unseen/Img_Train.txt"):
        PiadDataset(tmp_path, "train", setting="unseen")
    (tmp_path / "piad_ocontact_seen" / "Point" / "Test" / "Bag" / "Point_Test_Bag_1.txt").write_text("1 Bag 0.1 0.2\n")
    with pytest.raises(DatasetFormatError, match="Point_Test_Bag_1.txt: expected 22 columns"):
        ds[0]


def test_lemon_object(tmp_path):
    written = fx.write_lemon_object(tmp_path)
    ds = LemonObjectDataset(tmp_path, "train")
    sample = ds[0]
    check_sample(sample, "oafford")
    assert sample["class_name"] == "Bag" and sample["meta"]["affordance"] == "carry"
    np.testing.assert_allclose(sample["vertex_labels"], written["table"][:, written["carry"]], atol=1e-4)
    assert written["carry"] == 16  # LEMON column order, not PIAD's
    assert LemonObjectDataset(tmp_path, "train", pairing="aligned")[0]["meta"]["template_stem"] == "Bag_obj_1"


def test_pico(tmp_path):
    written = fx.write_pico(tmp_path)
    ds = PicoDataset(tmp_path, "train")
    assert len(ds) == 2
    for i, stem in enumerate(written["stems"]):
        sample = ds[i]
        check_sample(sample, "ocontact")
        obj = stem.split("__")[0]
        assert sample["class_name"] == obj and obj in sample["question"]
        assert sample["template"].endswith(f"lowpoly_mesh_0507/{obj}")
        np.testing.assert_array_equal(sample["vertex_labels"], written["contacts"][stem])
        disk = written["disk"]
        assert (sample["masks"][:, ~disk] == -1).all() and set(np.unique(sample["masks"][:, disk])) == {0.0, 1.0}
    (written["root"] / "lowpoly_mesh_0507" / "chair" / "p2vmap_chair__000000000139_backleft.npz").unlink()
    assert len(PicoDataset(tmp_path, "train")) == 1


# ------------------------------------------------------------------------------------------------------------------
# VQA and images


def test_vqa_multi_turn(tmp_path):
    fx.write_vqa(tmp_path)
    ds = VQADataset(tmp_path, source="llava")
    assert len(ds) == 2 and ds.name == "llava_vqa"
    sample = ds[0]
    check_sample(sample, "vqa")
    assert sample["conversation"] == [
        ("What are the colors of the bus in the image?", "The bus in the image is white and red."),
        ("What feature can be seen on the back of the bus?", "The back of the bus features an advertisement.")]
    assert sample["masks"] is None and sample["vertex_labels"] is None and sample["template"] is None
    assert ds[1]["question"] == "Where is the cat positioned?"  # a trailing <image> is removed too
    json_path = tmp_path / "llava_dataset" / "llava_instruct_150k.json"
    json_path.write_text('[{"image": "a.jpg", "conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "x"}]}]')
    with pytest.raises(DatasetFormatError, match="llava_instruct_150k.json: entry 0: turn 0 should be"):
        VQADataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="hoi_vqa/damon.json"):
        build_dataset("vqa_damon", tmp_path)


def test_read_image_converts_modes(tmp_path):
    gray = read_image(fx.write_image(tmp_path / "g.png", 0, mode="gray"))
    rgba = read_image(fx.write_image(tmp_path / "a.png", 0, mode="rgba"))
    assert gray.shape == rgba.shape == (20, 28, 3) and gray.dtype == rgba.dtype == np.uint8
    assert (gray[..., 0] == gray[..., 1]).all()
    (tmp_path / "bad.jpg").write_bytes(b"\x00" * 10)
    with pytest.raises(DatasetFormatError, match="bad.jpg: not a readable image"):
        read_image(tmp_path / "bad.jpg")


def test_registry_names(tmp_path, body):
    fx.write_damon(tmp_path, body, root_name="synthcontact", split="val", long_names=False)
    ds = build_dataset("synthcontact_hcontact", tmp_path, "val")
    assert isinstance(ds, DamonDataset) and ds.num_vertices == 6997
    with pytest.raises(KeyError, match="unknown dataset"):
        build_dataset("nope", tmp_path)


def test_mixed_readers_through_a_dataloader(tmp_path, body, tiny_tokenizer):
    import torch

    from datasets import Collator, MixedDataset
    from model.config import build_config
    from model.io import attach_tokenizer

    fx.write_damon(tmp_path, body)
    fx.write_vqa(tmp_path)
    config = build_config("tiny")
    attach_tokenizer(config, tiny_tokenizer)
    mixed = MixedDataset([damon(tmp_path, body, body_part_dropout=0.5), build_dataset("vqa_llava", tmp_path)],
                         rates=[3, 1], batch_size=4, steps_per_epoch=2, seed=5)
    mixed.set_epoch(2)
    loader = torch.utils.data.DataLoader(mixed, batch_size=4, collate_fn=Collator(tiny_tokenizer, config))
    batches = list(loader)
    assert len(batches) == 2
    tasks = [t for b in batches for t in b["tasks"]]
    assert set(tasks) <= {"hcontact", "vqa"} and "hcontact" in tasks
    for batch in batches:
        for task, masks, count in zip(batch["tasks"], batch["masks"], batch["num_seg_tokens"].tolist()):
            assert (masks is not None) == (task == "hcontact") == (count == 1)
            if masks is not None:
                assert masks.shape == (4, config.mask_size, config.mask_size)
    again = list(torch.utils.data.DataLoader(mixed, batch_size=4, collate_fn=Collator(tiny_tokenizer, config)))
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again))  # reproducible epoch
