"""Datasets: the one in-memory sample type, the format registry, and ``build_dataset(cfg.data)``."""

from .registry import FORMATS, DataConfigError, get_format, register_format
from .sample import SPLITS, Sample, TaskSpec, load_image
from .dataset import MultiGranularDataset
from .build import build_dataset

# the formats (each registers itself with @register_format)
from . import csv_multilabel, digits, downstream_csv, fundus_synth, jsonl, mgll_json, wds  # noqa: E402

#: the modules that register the built-in formats (imported above for that)
FORMAT_MODULES = (csv_multilabel, digits, downstream_csv, fundus_synth, jsonl, mgll_json, wds)

__all__ = [
    "FORMATS",
    "SPLITS",
    "DataConfigError",
    "MultiGranularDataset",
    "Sample",
    "TaskSpec",
    "build_dataset",
    "get_format",
    "load_image",
    "register_format",
]
