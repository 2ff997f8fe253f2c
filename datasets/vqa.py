"""Visual question answering in the LLaVA conversation format: LLaVA-Instruct-150k and the original's HOI-VQA.

::

    <dataset_dir>/llava_dataset/llava_instruct_150k.json   + coco/train2017/<image>
    <dataset_dir>/hoi_vqa/{damon,lemon,piad_seen,piad_unseen}.json   + the source's image folder

Each JSON entry: ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n…"},
{"from": "gpt", "value": "…"}, …]}``. A sample keeps all turns (multi-turn); the ``<image>`` placeholder is removed
from the text because the collator puts the image tokens at the start of the first user turn.
"""

from __future__ import annotations

from pathlib import Path

from datasets.base import ContactDataset, Record
from datasets.io import DatasetFormatError, expect_type, load_json
from utils.conversation import IMAGE_TOKEN

# source → (conversation JSON, image folder), relative to dataset_dir
VQA_SOURCES = {
    "llava": ("llava_dataset/llava_instruct_150k.json", "coco/train2017"),
    "damon": ("hoi_vqa/damon.json", "damon/train/images"),
    "lemon": ("hoi_vqa/lemon.json", "lemon/images_vqa"),
    "piad_seen": ("hoi_vqa/piad_seen.json", "piad_ocontact_seen/images_vqa"),
    "piad_unseen": ("hoi_vqa/piad_unseen.json", "piad_ocontact_unseen/images_vqa"),
}
HUMAN_ROLES, ASSISTANT_ROLES = ("human", "user"), ("gpt", "assistant")


def parse_conversation(entry: object, path: Path, position: int) -> tuple[tuple[str, str], ...]:
    """``conversations`` of one entry → ((question, answer), …); anything but alternating human/gpt turns is an error."""
    where = f"entry {position}"
    entry = expect_type(entry, dict, path, f"{where} as a dict with 'image' and 'conversations'")
    if "id" in entry:
        where += f" (id {entry['id']!r})"
    turns = expect_type(entry.get("conversations"), list, path, f"{where}: a 'conversations' list")
    if not turns or len(turns) % 2:
        raise DatasetFormatError(f"{path}: {where}: expected alternating human/gpt turns, got {len(turns)} turns")
    pairs = []
    for i in range(0, len(turns), 2):
        question, answer = turns[i], turns[i + 1]
        for j, (turn, roles) in enumerate(((question, HUMAN_ROLES), (answer, ASSISTANT_ROLES))):
            if not isinstance(turn, dict) or turn.get("from") not in roles or not isinstance(turn.get("value"), str):
                raise DatasetFormatError(
                    f"{path}: {where}: turn {i + j} should be {{'from': {roles[0]!r}, 'value': str}}, got {turn!r:.120}"
                )
        text = question["value"].replace(IMAGE_TOKEN, "").strip()
        pairs.append((text, answer["value"].strip()))
    return tuple(pairs)


class VQADataset(ContactDataset):
    """``VQADataset(dataset_dir, source="llava")``: one sample per JSON entry, all turns kept.

    Args (besides :class:`ContactDataset`'s): ``source`` (a key of ``VQA_SOURCES``), ``json_path`` / ``image_dir``
    (overrides, relative to ``dataset_dir`` or absolute).
    """

    task = "vqa"

    def __init__(self, dataset_dir: str | Path, split: str = "train", *, source: str = "llava",
                 json_path: str | Path | None = None, image_dir: str | Path | None = None, name: str | None = None,
                 **options) -> None:
        if source not in VQA_SOURCES and (json_path is None or image_dir is None):
            raise ValueError(f"unknown VQA source {source!r}; known: {sorted(VQA_SOURCES)} (or give json_path and image_dir)")
        default_json, default_images = VQA_SOURCES.get(source, (None, None))
        self.source = source
        self.json_path = Path(dataset_dir) / (json_path or default_json)
        self.image_dir = Path(dataset_dir) / (image_dir or default_images)
        options.setdefault("load_masks", False)
        super().__init__(dataset_dir, split, name=name or f"{source}_vqa", **options)

    @property
    def root(self) -> Path:
        return self.json_path

    def empty_hint(self) -> str:
        return "the conversation file has no entries"

    def build_records(self) -> list[Record]:
        entries = expect_type(load_json(self.json_path, "a list of LLaVA conversation entries"), list, self.json_path,
                              "a list of LLaVA conversation entries")
        records = []
        for position, entry in enumerate(entries):
            conversation = parse_conversation(entry, self.json_path, position)
            image = entry.get("image")
            if not isinstance(image, str) or not image:
                raise DatasetFormatError(f"{self.json_path}: entry {position} has no 'image' file name")
            records.append(Record(image_path=self.image_dir / image, template=None, conversation=conversation,
                                  meta={"id": entry.get("id", position), "source": self.source}))
        return records
