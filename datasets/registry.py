"""Reader names used by training recipes (``damon_hcontact``, ``vqa_llava``, …) → reader class + fixed options."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from datasets.base import ContactDataset
from datasets.damon import Damon2DDataset, DamonDataset
from datasets.lemon import LemonHumanDataset, LemonObjectDataset
from datasets.piad import PiadDataset
from datasets.pico import PicoDataset
from datasets.rich import RichDataset
from datasets.synthcontact_objects import SynthContactObjectDataset
from datasets.synthcontact_canonical import SynthContactAffordanceDataset, SynthContactCanonicalObjectDataset
from datasets.vqa import VQA_SOURCES, VQADataset

READERS: dict[str, tuple[Callable[..., ContactDataset], dict[str, Any]]] = {
    "damon_hcontact": (DamonDataset, {"root_name": "damon"}),
    "damon_h2dcontact": (Damon2DDataset, {"root_name": "damon"}),
    "synthcontact_hcontact": (DamonDataset, {"root_name": "synthcontact", "num_vertices": 6997}),
    "synthcontact_h2dcontact": (Damon2DDataset, {"root_name": "synthcontact", "num_vertices": 6997}),
    "lemon_hcontact": (LemonHumanDataset, {}),
    "rich_hcontact": (RichDataset, {}),
    "piad_oafford": (PiadDataset, {"setting": "seen"}),
    "piad_unseen_oafford": (PiadDataset, {"setting": "unseen"}),
    "lemon_oafford": (LemonObjectDataset, {}),
    "pico_ocontact": (PicoDataset, {}),
    "synthcontact_ocontact": (SynthContactObjectDataset, {}),
    "synthcontact_ocontact_canonical": (SynthContactCanonicalObjectDataset, {}),  # class templates (training)
    "synthcontact_oafford_canonical": (SynthContactAffordanceDataset, {}),
    **{f"vqa_{source}": (VQADataset, {"source": source}) for source in VQA_SOURCES},
}


def build_dataset(name: str, dataset_dir: str | Path, split: str = "train", **options: Any) -> ContactDataset:
    """``build_dataset("damon_hcontact", "data", "train", valid_mask=..., body_part_dropout=0.5)``.

    ``options`` go to the reader's constructor (they override the registry's fixed options).
    """
    try:
        reader, fixed = READERS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(READERS))}") from None
    return reader(dataset_dir, split, **{**fixed, **options})
