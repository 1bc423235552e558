"""The downstream-task registry: linear probe, fine-tune, zero-shot, retrieval; and their metrics.

Use::

    import tasks
    task = tasks.build("linear_probe", target="disease_multilabel", label_fraction=0.1)
    metrics = task.run(model, {"train": train, "val": val, "test": test}, cache=tasks.FeatureCache("cache/"))

``TASKS`` maps each name to its class; ``build`` validates the options now (``TaskConfigError`` names the
task, the option and the allowed values). ``TASKS[name].needs_target`` says whether a task requires ``target``.
"""

from __future__ import annotations

from . import finetune, linear_probe, retrieval, zeroshot  # noqa: F401  (fill the registry)
from .base import Task
from .features import FeatureCache, extract_image_features
from .metrics import classification_metrics
from .registry import TASKS, TaskConfigError, build, register

__all__ = [
    "TASKS",
    "FeatureCache",
    "Task",
    "TaskConfigError",
    "build",
    "classification_metrics",
    "extract_image_features",
    "register",
]
