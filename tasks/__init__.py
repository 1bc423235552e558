"""The downstream-task registry: linear probe, fine-tune, zero-shot, retrieval; and their metrics.

Use::

    import tasks
    task = tasks.build("linear_probe", target="disease_multilabel", label_fraction=0.1)
    metrics = task.run(model, {"train": train, "val": val, "test": test}, cache=tasks.FeatureCache("cache/"))

``TASKS`` maps each name to its class; ``build`` validates the options now (``TaskConfigError`` names the
task, the option and the allowed values). ``TASKS[name].needs_target`` says whether a task requires ``target``.

Importing is lazy: ``import tasks`` (and ``import tasks.metrics``, which the report uses) loads neither torch
nor the task modules; the first use of ``TASKS``, ``build``, ``register``, ``Task``, ``FeatureCache`` or
``extract_image_features`` imports the built-in tasks (and so torch), which fills the registry.
"""

from __future__ import annotations

import importlib
from typing import Any

from .metrics import classification_metrics
from .registry import TaskConfigError

#: the modules that register the built-in tasks
BUILTIN_TASK_MODULES = ("finetune", "linear_probe", "retrieval", "zeroshot")
_LAZY = {"TASKS": "registry", "build": "registry", "register": "registry", "Task": "base",
         "FeatureCache": "features", "extract_image_features": "features"}

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


def load_builtin_tasks() -> None:
    """Import the built-in task modules (they fill ``TASKS``); cheap after the first call."""
    for name in BUILTIN_TASK_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    load_builtin_tasks()
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
