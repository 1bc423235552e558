"""The schema of the run configuration: every key, its type, default and help, in one place.

``RunConfig`` (a tree of dataclasses) is the typed default config (``OmegaConf.structured``); ``--help``,
the key tables of the README and docs (:func:`markdown_table`) and the checks of :mod:`bench.config` are
generated from it. A field's ``metadata`` holds

- ``help``: one line for ``--help`` and the docs;
- ``identity: False`` for keys that do not change what a cell computes (left out of the cell id);
- ``omit_default: True`` for keys added after cells were stored: left out of the cell id at their default,
  so the ids of existing cells do not change;
- the checks of :mod:`bench.options`: ``min``, ``max``, ``min_open``, ``max_open``, ``choices``, ``check``.

Five sections are *open*: their keys depend on a selector (``data.format``, ``image.name``, ``text.name``,
``objective.name``, ``launcher.name``) and are checked by the builder they go to (the data format, the tower,
the objective, the launcher), which names the key and what is allowed. Their shared keys, handled by the
harness itself, are documented (and checked) here as ``DataShared``, ``ImageShared``, ``TextShared``.
``tasks`` is a list of task entries checked by the task registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from .errors import ConfigError
from .options import OptionDoc, as_choice, describe

__all__ = [
    "AUGMENT_PRESETS",
    "OPEN_SECTIONS",
    "SELECTORS",
    "RunConfig",
    "markdown_table",
    "non_identity_keys",
    "section_classes",
]

#: open sections and the key that selects their builder (``launcher=slurm`` means ``launcher.name=slurm``)
SELECTORS = {"data": "format", "image": "name", "text": "name", "objective": "name", "launcher": "name"}
OPEN_SECTIONS = tuple(SELECTORS)

#: ``train.augment`` presets (``true`` = ``flip``, ``false`` = ``none``, as written by older configs)
AUGMENT_PRESETS = ("none", "flip", "open_clip", "mgll")

#: ``data.check_images`` modes (``true`` = ``all``, ``false`` = ``none``, as written by older configs)
CHECK_IMAGES = ("auto", "all", "sample", "none")


def _help(text: str, **extra: Any) -> dict:
    return {"help": text, **extra}


def _check_images(key: str, value: Any) -> str:
    if value is True:
        return "all"
    if value is False:
        return "none"
    return as_choice(key, value, CHECK_IMAGES)


def _augment(key: str, value: Any) -> str:
    if value is True:
        return "flip"
    if value is False:
        return "none"
    return as_choice(key, value, AUGMENT_PRESETS)


# ----------------------------------------------------------------------------------------------------------
# typed sections
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    embed_dim: int = field(default=128, metadata=_help("shared embedding size", min=1))
    normalize_embeddings: bool = field(
        default=True, metadata=_help("L2-normalise embeddings (false reproduces the released MGLL code)"))
    logit_scale_init: Optional[float] = field(default=None, metadata=_help(
        "initial logit scale s = exp(t) (null: the objective's preference, else 1/0.07)", min=0, min_open=True))
    logit_scale_max: float = field(default=100.0, metadata=_help("upper bound of the logit scale", min=0, min_open=True))
    logit_bias_init: Optional[float] = field(default=None, metadata=_help(
        "initial logit bias (null: only objectives that need one, SigLIP, get one)"))
    precision: str = field(default="auto", metadata=_help(
        "autocast of the forward: auto (bf16 on CUDA when supported, fp32 elsewhere), bf16, fp16, fp32",
        choices=["auto", "bf16", "fp16", "fp32"]))
    compile: bool = field(default=False, metadata=_help("torch.compile both towers (state-dict keys unchanged)"))
    init: Optional[str] = field(default=None, metadata=_help(
        "start from these weights: a cell folder or its encoder.pt, a released MGLL checkpoint, or open_clip / timm "
        "image weights (a local file); null: random init (see docs/suites.md)", omit_default=True))


@dataclass
class TrainConfig:
    epochs: int = field(default=10, metadata=_help("pretraining epochs", min=1))
    batch_size: int = field(default=64, metadata=_help("global batch (the last incomplete batch is dropped)", min=1))
    lr: float = field(default=3e-4, metadata=_help("AdamW learning rate (peak, after warmup)", min=0, min_open=True))
    weight_decay: float = field(default=0.05, metadata=_help(
        "AdamW weight decay (none on biases, norms and the logit scale)", min=0))
    warmup_epochs: float = field(default=1.0, metadata=_help(
        "linear warmup, then cosine decay to 0, updated every step", min=0))
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98], metadata=_help(
        "AdamW betas", min=0, max=1, max_open=True))
    grad_clip: float = field(default=10.0, metadata=_help("gradient-norm clip (0 = off)", min=0))
    device: str = field(default="auto", metadata=_help(
        "auto (CUDA if available, else CPU), cpu, cuda, cuda:1"))
    threads: int = field(default=0, metadata=_help(
        "torch CPU threads (0 = torch's default; on a busy 2-core machine 1 is fastest)", min=0))
    augment: Any = field(default="flip", metadata=_help(
        "augmentation preset, applied per sample in the loader's workers: none (resize only), flip (random "
        "horizontal flips), open_clip (open_clip's training transform: RandomResizedCrop scale 0.9-1, bicubic), "
        "mgll (the released MGLL code's: flip, colour jitter 0.1, RandomResizedCrop 0.9-1, ImageNet mean/std); "
        "see docs/data-loading.md", check=_augment))
    log_every: int = field(default=10, metadata=_help("log the loss terms to history.csv every N steps", min=1))
    deterministic: bool = field(default=False, metadata=_help("torch.use_deterministic_algorithms(True)"))
    checkpoint_every_steps: int = field(default=0, metadata=_help(
        "also checkpoint every N optimiser steps (0: at epoch ends and on the preemption signal only)", min=0,
        identity=False))


@dataclass
class EvalConfig:
    at_init: bool = field(default=False, metadata=_help(
        "also evaluate the untrained model (metrics prefixed init/): the random-encoder baseline"))
    batch_size: int = field(default=256, metadata=_help("batch size of feature extraction", min=1))
    feature_cache: bool = field(default=True, metadata=_help("cache frozen image features per cell", identity=False))
    suite: Optional[str] = field(default=None, metadata=_help(
        "a downstream suite: a packaged suite name (bench/suites/) or a suite YAML file; its datasets are evaluated "
        "next to the tasks (keys <dataset>/<task>/<target>/<metric>)", omit_default=True))
    suite_datasets: Optional[list[str]] = field(default=None, metadata=_help(
        "evaluate only these datasets of eval.suite (null: all)", min_len=1, omit_default=True))


@dataclass
class ReportConfig:
    rows: str = field(default="label", metadata=_help("config key whose values are the table rows"))
    baseline: Optional[str] = field(default=None, metadata=_help("row value the significance tests compare with"))


# shared keys of the open sections (checked here; everything else goes to the builder)
@dataclass
class DataShared:
    format: str = field(default="fundus_synth", metadata=_help("dataset format (see Data formats)"))
    resolution: int = field(default=64, metadata=_help("image size fed to the model (images are resized)", min=1))
    levels: Optional[list[str]] = field(default=None, metadata=_help(
        "the text levels the run uses, in order (null: all the data has)", min_len=1))
    on_bad_sample: Optional[str] = field(default=None, metadata=_help(
        "error (default: stop and list every problem) or skip (drop bad samples, count them)",
        choices=["error", "skip"]))
    check_images: Any = field(default=None, metadata=_help(
        "image files opened before training: all (every file, in parallel processes), sample (a random "
        "sample of them; the rest are found while loading), none, auto (default: all up to 20000 files, "
        "else sample); true/false = all/none", check=_check_images))
    workers: Optional[int] = field(default=None, metadata=_help(
        "loader worker processes that decode and augment (null: the CPUs this process may use minus one, at "
        "most 8; 0: the main process)", min=0, identity=False))
    split_seed: Optional[int] = field(default=None, metadata=_help("seed of drawn splits (data without a split field)"))
    val_fraction: Optional[float] = field(default=None, metadata=_help("drawn val fraction (default 0.1)", min=0, max=1, max_open=True))
    test_fraction: Optional[float] = field(default=None, metadata=_help("drawn test fraction (default 0.1)", min=0, max=1, max_open=True))
    missing_rate: Optional[float] = field(default=None, metadata=_help(
        "drop each used level's text for this fraction of training samples (default 0)", min=0, max=1))
    missing_seed: Optional[int] = field(default=None, metadata=_help("seed of the dropped texts (default 0)"))
    missing_levels: Optional[list[str]] = field(default=None, metadata=_help(
        "the levels that lose texts (default: every level used)"))


@dataclass
class ImageShared:
    name: str = field(default="vit_tiny_custom", metadata=_help(
        "image tower: vit_tiny_custom, timm (image.model=...), open_clip (image.model=...), or a timm model name"))
    freeze: Any = field(default=None, metadata=_help("false, true, or k: train only the last k blocks"))
    grad_checkpointing: Optional[bool] = field(default=None, metadata=_help("activation checkpointing"))
    mean: Any = field(default=None, metadata=_help("pixel mean: 3 numbers, or clip (default), imagenet, half"))
    std: Any = field(default=None, metadata=_help("pixel std: 3 numbers, or clip (default), imagenet, half"))


@dataclass
class TextShared:
    name: str = field(default="tiny_transformer", metadata=_help(
        "text tower: tiny_transformer, open_clip (text.model=...), hf (a local folder), minilm"))
    context_length: Optional[int] = field(default=None, metadata=_help(
        "token positions of every text (texts are cut to it; the default config sets 32)", min=2))
    freeze: Any = field(default=None, metadata=_help("false, true, or k: train only the last k blocks"))
    grad_checkpointing: Optional[bool] = field(default=None, metadata=_help("activation checkpointing"))


@dataclass
class ObjectiveShared:
    name: str = field(default="clip", metadata=_help("the objective (python -m bench.run --help objective)"))


@dataclass
class LauncherShared:
    name: str = field(default="inline", metadata=_help(
        "inline (this process), local (submitit processes), slurm (a job array)", identity=False))


@dataclass
class RunConfig:
    grid: Optional[str] = field(default=None, metadata=_help(
        "a packaged grid name or a path to a grid YAML file (default smoke)", identity=False))
    label: Optional[str] = field(default=None, metadata=_help(
        "row label in reports (default: derived from the objective)", identity=False))
    seed: int = field(default=0, metadata=_help("seed of the model init, the data order and the tasks"))
    results_dir: str = field(default="results", metadata=_help(
        "output root; a grid's cells live in <results_dir>/<grid>/", identity=False))
    dry_run: bool = field(default=False, metadata=_help("list the cells and their state; run nothing", identity=False))
    print_config: bool = field(default=False, metadata=_help(
        "print each cell's resolved config (YAML) and exit; run nothing", identity=False))
    rerun_failed: bool = field(default=False, metadata=_help("also rerun failed cells", identity=False))
    rerun_corrupt: bool = field(default=False, metadata=_help(
        "repair corrupt cells: keep valid files, set damaged ones aside as <file>.corrupt and recompute them; a "
        "checkpoint that cannot be loaded safely restarts the cell from scratch", identity=False))
    eval_only: bool = field(default=False, metadata=_help(
        "no pretraining: evaluate model.init (or the random init) on the tasks and eval.suite", omit_default=True))
    preflight: bool = field(default=True, metadata=_help(
        "build every distinct data / model / objective / task config once before running; stop with exit "
        "status 2 and every problem", identity=False))
    report: ReportConfig = field(default_factory=ReportConfig, metadata=_help("report layout", identity=False))
    launcher: dict[str, Any] = field(default_factory=lambda: {"name": "inline"}, metadata=_help(
        "how cells are executed: launcher.name and its options", identity=False, shared=LauncherShared))
    data: dict[str, Any] = field(default_factory=lambda: {"format": "fundus_synth", "resolution": 64, "levels": None},
                                 metadata=_help("the pretraining dataset: data.format and its options", shared=DataShared))
    image: dict[str, Any] = field(default_factory=lambda: {"name": "vit_tiny_custom"}, metadata=_help(
        "the image tower: image.name and its options", shared=ImageShared))
    text: dict[str, Any] = field(default_factory=lambda: {"name": "tiny_transformer", "context_length": 32}, metadata=_help(
        "the text tower: text.name and its options", shared=TextShared))
    model: ModelConfig = field(default_factory=ModelConfig, metadata=_help("the two-tower model"))
    objective: dict[str, Any] = field(default_factory=lambda: {"name": "clip"}, metadata=_help(
        "the objective: objective.name and its options", shared=ObjectiveShared))
    train: TrainConfig = field(default_factory=TrainConfig, metadata=_help("pretraining"))
    tasks: list[Any] = field(default_factory=lambda: ["linear_probe/disease_multilabel"], metadata=_help(
        "downstream tasks: TASK/TARGET or {name: TASK, target: ..., options}"))
    eval: EvalConfig = field(default_factory=EvalConfig, metadata=_help("evaluation"))


# ----------------------------------------------------------------------------------------------------------
# views of the schema
# ----------------------------------------------------------------------------------------------------------
def section_classes() -> dict[str, type]:
    """Top-level key -> its dataclass (typed sections) or shared-keys dataclass (open sections)."""
    out = {}
    for f in fields(RunConfig):
        tp = f.default_factory() if f.default_factory is not None and is_dataclass(f.default_factory) else None  # type: ignore[misc]
        if tp is not None:
            out[f.name] = type(tp)
        elif "shared" in f.metadata:
            out[f.name] = f.metadata["shared"]
    return out


def non_identity_keys() -> tuple[str, ...]:
    """Keys that do not change what a cell computes (dotted for keys inside a section)."""
    out = []
    sections = section_classes()
    for f in fields(RunConfig):
        if f.metadata.get("identity", True) is False:
            out.append(f.name)
            continue
        cls = sections.get(f.name)
        if cls is not None:
            out += [f"{f.name}.{g.name}" for g in fields(cls) if g.metadata.get("identity", True) is False]
    return tuple(out)


def omitted_at_default() -> dict[str, Any]:
    """Dotted key -> default, for the keys left out of the cell id when at their default (``omit_default``)."""
    out: dict[str, Any] = {}
    sections = section_classes()
    for f in fields(RunConfig):
        if f.metadata.get("omit_default"):
            out[f.name] = f.default
        cls = sections.get(f.name)
        if cls is not None:
            for g in fields(cls):
                if g.metadata.get("omit_default"):
                    out[f"{f.name}.{g.name}"] = g.default
    return out


def _fmt_default(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return v or '""'
    return str(v).replace("'", "")


def rows() -> list[OptionDoc]:
    """Every documented key in schema order (sections flattened, shared keys of open sections included)."""
    out: list[OptionDoc] = []
    sections = section_classes()
    top = {d.key: d for d in describe(RunConfig)}
    for f in fields(RunConfig):
        cls = sections.get(f.name)
        if cls is None:
            out.append(top[f.name])
        else:
            out += describe(cls, prefix=f"{f.name}.")
            if f.name in SELECTORS:
                sel = SELECTORS[f.name]
                out.append(OptionDoc(f"{f.name}.*", "", "", f"the options of the chosen {f.name}.{sel} "
                                     f"(python -m bench.run --help {f.name})"))
    return out


def markdown_table() -> str:
    """The key table of the docs (generated; a test keeps the docs equal to it)."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for d in rows():
        default = "" if d.key.endswith(".*") else f"`{_fmt_default(d.default)}`"
        text = d.help.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        lines.append(f"| `{d.key}` | {default} | {text} |")
    return "\n".join(lines)


def help_text() -> str:
    """Every key with its default and help, for ``python -m bench.run --help``."""
    out = []
    width = max(len(d.key) for d in rows())
    for d in rows():
        default = "" if d.key.endswith(".*") else f" [{_fmt_default(d.default)}]"
        out.append(f"  {d.key.ljust(width)}  {d.help}{default}")
    return "\n".join(out)


def check_shared(section: str, given: dict, where: str) -> dict:
    """The shared keys of an open section checked (types, bounds, choices); other keys pass through."""
    from .options import coerce
    import typing

    cls = section_classes()[section]
    hints = typing.get_type_hints(cls)
    out = dict(given)
    for f in fields(cls):
        if f.name in out and out[f.name] is not None:
            try:
                out[f.name] = coerce(f"{section}.{f.name}", out[f.name], hints[f.name], f.metadata)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}", key=e.key, value=e.value) from None
    return out
