"""``downstream_csv``: classification tables for downstream tasks (linear probe, fine-tune, zero-shot).

Two layouts:

- the MGLL release's (``data.path=<data dir> data.csv_name=<name>``):
  ``<data dir>/All_csv_downstream/<name>_{Train,Val,Test}.csv`` -> splits train/val/test; column 0 = ImageID,
  columns 1.. = labels (numeric). Images by ``data.image_rule``: ``npz`` (default) = the release's rule
  ``data_dir + '/All_data_npz' + splitext(ImageID[9:])[0] + '.npz'``; ``verbatim`` (default when the name
  contains ``MIDRC``, as in the release) = ImageID is the path (relative to ``data.image_root``, default the
  data dir).
- one plain table (``data.path=<file.csv>``): ``data.image_column`` (default: the first column), labels =
  ``data.label_columns`` (default: every other column but the split/patient ones), ``data.split_column``
  (default ``split`` when the table has one; values train/val/test and aliases; without it splits are drawn,
  see ``data.split_seed``), ``data.patient_column``; image paths relative to ``data.image_root`` (default the
  table's folder) unless absolute.

``data.task_kind`` (required): ``multiclass`` = the *first* label column holds a class index (as the MGLL
code reads it; ``data.label_columns=[col]`` picks another), or a class name from ``data.class_names``;
classes = ``data.class_names``, else ``"0".."K-1"`` with K = ``data.num_classes``, else the largest index seen
+ 1. ``multilabel`` = every label column is 0/1; classes = the column names (or ``data.class_names``).
The task is named ``data.task_name`` (default: the csv name / the file's stem).

Texts: none by default (no levels). With ``data.label_template="a fundus photograph of {labels}"`` the
dataset gets one level, ``label``: the positive class names (vocabulary = the classes) and the template
filled with them (an all-zero multi-label row has no text), e.g. for zero-shot evaluation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .options import existing_path, take
from .paths import IMAGE_RULES, image_path
from .problems import Problem, ProblemLog
from .registry import DataConfigError, register_format
from .sample import Sample, TaskSpec
from .dataset import MultiGranularDataset
from .splits import normalize_split
from .tables import number_hint, read_csv, require_columns, row_origin
from .templates import check_template, render

log = logging.getLogger(__name__)

FMT = "downstream_csv"
KINDS = ("multiclass", "multilabel")
MGLL_SPLITS = (("train", "Train"), ("val", "Val"), ("test", "Test"))
LEVEL = "label"


@dataclass
class Options:
    path: str = field(metadata={"help": "a CSV table, or the MGLL data folder (with data.csv_name)"})
    task_kind: str = field(metadata={"help": "multiclass (first label column) or multilabel (every label column)",
                                     "choices": list(KINDS)})
    csv_name: Optional[str] = field(default=None, metadata={
        "help": "MGLL layout: <path>/All_csv_downstream/<csv_name>_{Train,Val,Test}.csv"})
    task_name: Optional[str] = field(default=None, metadata={"help": "name of the downstream task (default: the table's)"})
    image_column: Optional[str] = field(default=None, metadata={"help": "column of image paths (default: the first)"})
    label_columns: Optional[list[str]] = field(default=None, metadata={"help": "label columns (default: all the others)"})
    class_names: Optional[list[str]] = field(default=None, metadata={"help": "names of the classes, in order"})
    num_classes: Optional[int] = field(default=None, metadata={"help": "number of classes of a multiclass task", "min": 1})
    split_column: Optional[str] = field(default=None, metadata={"help": "column of train/val/test (one-table layout)"})
    patient_column: Optional[str] = field(default=None, metadata={"help": "column of patient ids"})
    image_rule: Optional[str] = field(default=None, metadata={
        "help": "how the image column maps to a file (default: npz in the MGLL layout, verbatim otherwise)",
        "choices": list(IMAGE_RULES)})
    image_root: Optional[str] = field(default=None, metadata={"help": "folder image paths are relative to"})
    label_template: Optional[str] = field(default=None, metadata={"help": "text of a label for the text level ({labels})"})


def _tables(opt: dict, path: Path) -> tuple[list[tuple[Path, Any, str | None]], str, str, Path]:
    """[(file, table, split or None)], task name, image rule, image root."""
    if path.is_dir():
        name = opt["csv_name"]
        if not name:
            raise DataConfigError(
                f"data.format={FMT}: data.path={str(path)!r} is a folder, so data.csv_name is required "
                "(<data dir>/All_csv_downstream/<csv_name>_{Train,Val,Test}.csv), or give data.path=<file.csv>"
            )
        files = [(path / "All_csv_downstream" / f"{name}_{suffix}.csv", split) for split, suffix in MGLL_SPLITS]
        missing = [str(f) for f, _ in files if not f.is_file()]
        if missing:
            raise DataConfigError(f"data.format={FMT}: data.csv_name={name!r}: missing table(s) {missing}")
        if opt["split_column"] is not None:
            raise DataConfigError(f"data.format={FMT}: data.split_column applies to a single table; the MGLL layout has one table per split")
        rule = opt["image_rule"] or ("verbatim" if "MIDRC" in str(name) else "npz")
        root = Path(opt["image_root"]) if opt["image_root"] else path
        return [(f, read_csv(f), split) for f, split in files], str(name), rule, root
    if opt["csv_name"] is not None:
        raise DataConfigError(f"data.format={FMT}: data.csv_name applies to the MGLL folder layout; data.path={str(path)!r} is a file")
    rule = opt["image_rule"] or "verbatim"
    root = Path(opt["image_root"]) if opt["image_root"] else path.parent
    return [(path, read_csv(path), None)], path.stem, rule, root


def _int_like(v: str) -> int | None:
    """``"2"`` / ``"2.0"`` -> 2; anything else (text, ``1.5``, ``nan``, ``inf``) -> None."""
    try:
        f = float(v)
    except ValueError:
        return None
    if not math.isfinite(f):
        return None
    return int(f) if f == int(f) else None


@register_format(FMT, options=Options)
def build(**options: Any) -> MultiGranularDataset:
    opt = take(FMT, options, Options)
    kind = opt["task_kind"]
    path = existing_path(FMT, "path", opt["path"])
    tables, default_task, rule, root = _tables(opt, path)
    task = str(opt["task_name"] or default_task)
    class_names = opt["class_names"]
    template = check_template(opt["label_template"], "data.label_template") if opt["label_template"] is not None else None
    wanted = opt["label_columns"]

    plan = []  # (file, df, split, image column, label columns, split column)
    for f, df, split in tables:
        image_col = opt["image_column"] or df.columns[0]
        split_col = opt["split_column"]
        if split is None and split_col is None and "split" in df.columns:
            split_col = "split"
            log.info("%s: splits from column 'split' (data.split_column)", f.name)
        require_columns(f, df, {"image_column": image_col, "split_column": split_col, "patient_column": opt["patient_column"]})
        meta = {image_col, split_col, opt["patient_column"]}
        cols = wanted if wanted is not None else [c for c in df.columns if c not in meta]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataConfigError(f"{f}: data.label_columns {missing} are not columns of this table; its columns are {list(df.columns)}")
        if not cols:
            raise DataConfigError(f"{f}: no label columns (columns: {list(df.columns)})")
        if kind == "multiclass" and len(cols) > 1:
            log.warning("%s: multiclass reads the first label column %r (as the MGLL code); ignoring %s", f.name, cols[0], cols[1:])
            cols = cols[:1]
        plan.append((f, df, split, image_col, cols, split_col))
    label_cols = plan[0][4]
    for f, _, _, _, cols, _ in plan[1:]:
        if cols != label_cols:
            raise DataConfigError(f"{f}: label columns {cols} differ from {plan[0][0].name}'s {label_cols}")

    if kind == "multilabel":
        classes = class_names or list(label_cols)
        if len(classes) != len(label_cols):
            raise DataConfigError(f"data.class_names has {len(classes)} names for {len(label_cols)} label columns {label_cols}")
    else:
        classes = class_names
        if classes is None and opt["num_classes"] is not None:
            n = opt["num_classes"]
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise DataConfigError(f"data.format={FMT}: data.num_classes={n!r} must be a positive integer")
            classes = [str(k) for k in range(n)]

    problems = ProblemLog()
    rows = []  # (origin, id, image, target, split, patient)
    for f, df, split, image_col, cols, split_col in plan:
        for i, rec in enumerate(df.to_dict("records")):
            origin = row_origin(f, i, image_field=image_col)
            sid = rec[image_col]
            key = sid or f"{f}:{i + 2}"
            n0 = len(problems)
            if not sid:
                problems.add(Problem.at(origin, image_col, f"missing image id (column {image_col!r} is blank)", key))
            target: Any = None
            if kind == "multilabel":
                vals = []
                for c in cols:
                    v = _int_like(rec[c])
                    if v not in (0, 1):
                        problems.add(Problem.at(origin, c, f"value {rec[c]!r} in column {c!r} is not 0 or 1"
                                                f"{number_hint(rec[c])}", key))
                    vals.append(v)
                target = tuple(vals)
            else:
                c, raw = cols[0], rec[cols[0]]
                v = _int_like(raw)
                if v is None and class_names is not None and raw in class_names:
                    v = class_names.index(raw)
                if v is None or v < 0 or (classes is not None and v >= len(classes)):
                    allowed = f"a class index in [0, {len(classes)})" if classes is not None else "a class index >= 0"
                    if class_names is not None:
                        allowed += f" or one of data.class_names {class_names}"
                    problems.add(Problem.at(origin, c, f"value {raw!r} in column {c!r} is not {allowed}{number_hint(raw)}", key))
                target = v
            row_split = split
            if split_col:
                try:
                    row_split = normalize_split(rec[split_col])
                except ValueError as e:
                    problems.add(Problem.at(origin, split_col, str(e), key))
            if len(problems) > n0:
                continue
            pid = rec[opt["patient_column"]] if opt["patient_column"] else None
            rows.append((origin, key, image_path(rule, root, sid), target, row_split, pid or None))

    if classes is None:
        k = max((r[3] for r in rows), default=-1) + 1
        classes = [str(j) for j in range(k)]
        log.info("%s: %d classes (the largest index seen + 1; set data.num_classes or data.class_names to fix it)", task, k)
    levels = (LEVEL,) if template is not None else ()
    samples = []
    for origin, key, img, target, split, pid in rows:
        texts, labels = {}, {}
        if template is not None:
            names = [classes[target]] if kind == "multiclass" else [c for c, v in zip(classes, target) if v]
            labels[LEVEL] = tuple(names)
            texts[LEVEL] = render(template, names) if names else None
        samples.append(Sample(str(key), img, texts, labels, {task: target}, patient_id=pid, split=split, origin=origin))
    vocab = {LEVEL: list(classes)} if template is not None else {}
    dataset = MultiGranularDataset(samples, levels, vocab, {task: TaskSpec(kind, tuple(classes))}, name=f"{FMT}:{task}")
    problems.raise_if_any(partial=dataset)
    log.info("%s: %d samples, task %s (%s, %d classes)", dataset.name, len(samples), task, kind, len(classes))
    return dataset
