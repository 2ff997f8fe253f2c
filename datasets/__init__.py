"""Dataset readers (DAMON / SynthContact, LEMON, RICH, PIAD, PICO, VQA), the mixing dataset and the collator.

Every reader derives from :class:`datasets.base.ContactDataset` and returns the same sample dict; readers take the
data root (``dataset_dir``) as an argument and never look at the working directory.
"""

from datasets.base import ContactDataset, Record, sample_rng
from datasets.collate import Collator
from datasets.damon import Damon2DDataset, DamonDataset
from datasets.io import DatasetFormatError
from datasets.lemon import LemonHumanDataset, LemonObjectDataset
from datasets.mixing import MixedDataset
from datasets.pico import PicoDataset
from datasets.piad import PiadDataset
from datasets.registry import READERS, build_dataset
from datasets.rich import RichDataset
from datasets.vqa import VQADataset

__all__ = [
    "Collator", "ContactDataset", "Damon2DDataset", "DamonDataset", "DatasetFormatError", "LemonHumanDataset",
    "LemonObjectDataset", "MixedDataset", "PicoDataset", "PiadDataset", "READERS", "Record", "RichDataset",
    "VQADataset", "build_dataset", "sample_rng",
]
