"""``csv_multilabel``: a label table (one row per image) + an optional YAML hierarchy -> texts per level.

Label styles:

- joined names in one column (ChestX-ray14's ``Finding Labels``, ``Cardiomegaly|Effusion``):
  ``data.label_column`` (used by default when the table has a ``Finding Labels`` column), split at
  ``data.label_separator`` (default ``|``);
- one column per label (CheXpert: 1 / 0 / -1 uncertain / blank = not mentioned; RFMiD/ODIR: 0/1):
  ``data.label_columns=[...]``, default (auto) every column whose cells are all 1/0/-1/blank with at least one
  non-blank cell, except the image/id/patient/split columns. A -1 cell needs an explicit
  ``data.uncertain=positive|negative|ignore`` (there is no default): ``positive`` = the label is present;
  ``negative`` = absent (a confident 0); ``ignore`` = absent, and counted as not known in
  ``dataset.stats["uncertain_ignored"]`` (the multi-label target holds 0 there). Blank = absent.

The row's labels are the table's *fine* labels; ``data.hierarchy=<file.yaml>`` (see ``hierarchy.py``) adds
coarser levels. Without a hierarchy there is one level, ``data.level`` (default ``finding``).
Texts: per level, ``template.format(labels=", ".join(labels in vocabulary order))``; templates come from the
hierarchy file's ``templates`` and ``data.templates={level: ...}`` (which wins), default ``"{labels}"``.
A row with no label at all: ``data.empty_labels=error`` (default: a problem naming the row), ``missing``
(no text at any level) or ``text`` (each level's template filled with ``data.empty_text``, default
``"no finding"``). A coarse level whose mapping covers none of a row's labels has no text for that row.

Splits: ``data.split_column`` (default ``split`` when the table has such a column; values train/val/test and
aliases), else drawn by ``build_dataset`` (``data.split_seed``), grouped by ``data.patient_column``.

The dataset also provides one multi-label downstream task over the fine vocabulary,
``data.task_name`` (default ``<fine level>_multilabel``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .hierarchy import Hierarchy, flat, load_hierarchy
from .options import choice, existing_path, take
from .paths import resolve
from .problems import Problem, ProblemLog
from .registry import DataConfigError, register_format
from .sample import Sample, TaskSpec
from .dataset import MultiGranularDataset
from .splits import normalize_split
from .tables import FLAG_ALLOWED, flag_columns, parse_flag, read_csv, require_columns, row_origin
from .templates import DEFAULT_TEMPLATE, check_templates, render

log = logging.getLogger(__name__)

FMT = "csv_multilabel"
UNCERTAIN = ("positive", "negative", "ignore")
EMPTY = ("error", "missing", "text")
IMAGE_COLUMN_GUESSES = ("Path", "Image Index", "image", "ImageID", "image_path", "path", "filename")
JOINED_DEFAULT = "Finding Labels"


@dataclass
class Options:
    path: str = field(metadata={"help": "the CSV label table"})
    hierarchy: Optional[str] = field(default=None, metadata={"help": "a YAML label hierarchy (levels, parents, templates)"})
    templates: Any = field(default=None, metadata={"help": "level -> text template with {labels}"})
    level: Optional[str] = field(default=None, metadata={"help": "the single level's name without a hierarchy (default finding)"})
    image_column: Optional[str] = field(default=None, metadata={"help": "column of image paths (default: recognised)"})
    label_column: Optional[str] = field(default=None, metadata={"help": "column of joined label names (e.g. Finding Labels)"})
    label_separator: str = field(default="|", metadata={"help": "separator of the joined label names"})
    label_columns: Optional[list[str]] = field(default=None, metadata={"help": "0/1 label columns (instead of a joined column)"})
    uncertain: Optional[str] = field(default=None, metadata={
        "help": "what -1 (uncertain) means; required when the table has any", "choices": list(UNCERTAIN)})
    patient_column: Optional[str] = field(default=None, metadata={"help": "column of patient ids (splits are grouped by it)"})
    split_column: Optional[str] = field(default=None, metadata={"help": "column of train/val/test"})
    id_column: Optional[str] = field(default=None, metadata={"help": "column of sample ids (default: the image path)"})
    image_root: Optional[str] = field(default=None, metadata={"help": "folder image paths are relative to (default: the CSV's)"})
    image_suffix: str = field(default="", metadata={"help": "appended to every image path", "allow_empty": True})
    empty_labels: str = field(default="error", metadata={
        "help": "a row without labels: error, missing (no text), or text (data.empty_text)", "choices": list(EMPTY)})
    empty_text: str = field(default="no finding", metadata={"help": "the label of a row without labels (empty_labels=text)"})
    task_name: Optional[str] = field(default=None, metadata={"help": "name of the multi-label downstream task"})


def _image_column(path: Path, df, given: str | None) -> str:
    if given is not None:
        return given
    found = [c for c in IMAGE_COLUMN_GUESSES if c in df.columns]
    if len(found) != 1:
        raise DataConfigError(
            f"{path}: set data.image_column to the column holding image paths (columns: {list(df.columns)}; "
            f"recognised without it: exactly one of {list(IMAGE_COLUMN_GUESSES)})"
        )
    log.info("%s: data.image_column=%r (recognised)", path.name, found[0])
    return found[0]


def _hierarchy(opt: dict) -> Hierarchy:
    if opt["hierarchy"] is not None:
        if opt["level"] is not None:
            raise DataConfigError(
                f"data.format={FMT}: data.level names the single level used without a hierarchy; with "
                f"data.hierarchy the levels are the file's 'levels'"
            )
        return load_hierarchy(opt["hierarchy"])
    return flat(str(opt["level"] or "finding"))


def _uncertain_policy(path: Path, df, columns: list[str], given: str | None) -> tuple[str | None, int]:
    n = 0
    first = None
    for j, c in enumerate(columns):
        hits = df.index[df[c].isin(("-1", "-1.0"))]
        n += len(hits)
        if len(hits) and (first is None or (int(hits[0]), j) < first[:2]):
            first = (int(hits[0]), j, c)
    if given is not None:
        choice(FMT, "uncertain", given, UNCERTAIN)
    elif n:
        i, _, c = first
        raise DataConfigError(
            f"{path}: {n} uncertain (-1) label value(s), first at line {i + 2} (row {i + 1}), column {c!r}; "
            f"choose what they mean with data.uncertain=positive|negative|ignore (no default)"
        )
    return given, n


@register_format(FMT, options=Options)
def build(**options: Any) -> MultiGranularDataset:
    opt = take(FMT, options, Options)
    path = existing_path(FMT, "path", opt["path"], kind="file")
    empty_mode = opt["empty_labels"]
    df = read_csv(path)
    hier = _hierarchy(opt)
    levels = hier.levels
    templates = {**hier.templates, **check_templates(opt["templates"], levels, "data.templates")}
    templates = {g: templates.get(g, DEFAULT_TEMPLATE) for g in levels}

    image_col = _image_column(path, df, opt["image_column"])
    label_columns = opt["label_columns"]
    joined = opt["label_column"]
    if joined is not None and label_columns is not None:
        raise DataConfigError(f"data.format={FMT}: give data.label_column (joined names) or data.label_columns (0/1 columns), not both")
    if joined is None and label_columns is None and JOINED_DEFAULT in df.columns:
        joined = JOINED_DEFAULT
        log.info("%s: labels from the joined column %r (data.label_column)", path.name, joined)
    split_col = opt["split_column"]
    if split_col is None and "split" in df.columns:
        split_col = "split"
        log.info("%s: splits from column 'split' (data.split_column)", path.name)
    opt["split_column"] = split_col
    require_columns(
        path,
        df,
        {
            "image_column": image_col,
            "label_column": joined,
            "patient_column": opt["patient_column"],
            "split_column": opt["split_column"],
            "id_column": opt["id_column"],
        },
    )
    meta_cols = [c for c in (image_col, opt["patient_column"], opt["split_column"], opt["id_column"], joined) if c]
    problems = ProblemLog()
    n_uncertain, policy = 0, None
    if joined is None:
        if label_columns is None:
            label_columns, blank = flag_columns(df, exclude=meta_cols)
            if blank:
                log.info("%s: all-blank column(s) %s are not used as labels (set data.label_columns to use them)", path.name, blank)
            if not label_columns:
                raise DataConfigError(
                    f"{path}: no label columns found (none holds only {FLAG_ALLOWED}); set data.label_columns or "
                    f"data.label_column; columns: {list(df.columns)}"
                )
            log.info("%s: label columns (auto) %s", path.name, label_columns)
        else:
            missing = [c for c in label_columns if c not in df.columns]
            if missing:
                raise DataConfigError(f"{path}: data.label_columns {missing} are not columns of this table; its columns are {list(df.columns)}")
        policy, n_uncertain = _uncertain_policy(path, df, label_columns, opt["uncertain"])
        for c in label_columns:
            if not hier.is_known(c):
                problems.add(Problem(str(path), c, f"label column {c!r} is not a known label of the hierarchy "
                                     f"{hier.source}; known: {list(hier.known_fine() or ())}"))
    elif opt["uncertain"] is not None:
        raise DataConfigError(f"data.format={FMT}: data.uncertain applies to 0/1/-1 label columns, not to the joined column {joined!r}")

    known = hier.known_fine()
    if hier.fine_vocab is not None:
        fine_vocab = list(hier.fine_vocab)
    elif joined is None:
        fine_vocab = list(label_columns)
    elif known is not None:
        fine_vocab = list(known)
    else:
        sep = opt["label_separator"]
        fine_vocab = sorted({x.strip() for v in df[joined] for x in v.split(sep) if x.strip()})
    rank = {lab: j for j, lab in enumerate(fine_vocab)}
    task = opt["task_name"] or f"{hier.fine}_multilabel"
    image_root = Path(opt["image_root"]) if opt["image_root"] else path.parent
    samples: list[Sample] = []
    n_ignored = 0
    records = df.to_dict("records")
    for i, rec in enumerate(records):
        origin = row_origin(path, i, image_field=image_col)
        image = rec[image_col]
        sid = rec[opt["id_column"]] if opt["id_column"] else image
        key = sid or f"{path}:{i + 2}"
        n0 = len(problems)

        def bad(field: str, msg: str) -> None:
            problems.add(Problem.at(origin, field, msg, key))

        if not image:
            bad(image_col, f"missing image path (column {image_col!r} is blank)")
        if opt["id_column"] and not sid:
            bad(opt["id_column"], f"missing id (column {opt['id_column']!r} is blank)")
        fine: list[str] = []
        if joined is not None:
            for lab in dict.fromkeys(x.strip() for x in rec[joined].split(opt["label_separator"]) if x.strip()):
                if not hier.is_known(lab):
                    bad(joined, f"unknown label {lab!r} (not in the hierarchy {hier.source}); known: {list(known or ())}")
                fine.append(lab)
        else:
            for c in label_columns:
                try:
                    v = parse_flag(rec[c])
                except ValueError as e:
                    bad(c, f"{e} (column {c!r})")
                    continue
                if v == 1 or (v == -1 and policy == "positive"):
                    fine.append(c)
                elif v == -1 and policy == "ignore":
                    n_ignored += 1
        split = None
        if opt["split_column"]:
            try:
                split = normalize_split(rec[opt["split_column"]])
            except ValueError as e:
                bad(opt["split_column"], str(e))
        if not fine and empty_mode == "error" and len(problems) == n0:
            cols = joined if joined is not None else ", ".join(label_columns)
            bad(joined or "label_columns", f"empty label set: no label in {cols!r}; set data.empty_labels=missing|text to accept such rows")
        if len(problems) > n0:
            continue
        fine.sort(key=lambda lab: rank.get(lab, len(rank)))
        labels = hier.expand(fine)
        texts: dict[str, str | None] = {}
        for g in levels:
            if labels[g]:
                texts[g] = render(templates[g], labels[g])
            elif not fine and empty_mode == "text":
                texts[g] = render(templates[g], [opt["empty_text"]])
            else:  # no label at all (empty_labels=missing), or a coarse level covering none of the row's labels
                texts[g] = None
        fine_set = set(fine)
        pid = rec[opt["patient_column"]] if opt["patient_column"] else None
        samples.append(
            Sample(
                str(key),
                resolve(image_root, image + opt["image_suffix"]),
                texts,
                labels,
                {task: tuple(1 if lab in fine_set else 0 for lab in fine_vocab)},
                patient_id=pid or None,
                split=split,
                origin=origin,
            )
        )
    vocab = {g: (fine_vocab if g == hier.fine else list(hier.coarse_vocab(g))) for g in levels}
    stats: dict[str, float] = {}
    if n_uncertain:
        stats["uncertain_values"] = n_uncertain
        log.info("%s: %d uncertain (-1) value(s) taken as %s", path.name, n_uncertain, policy)
    if policy == "ignore":
        stats["uncertain_ignored"] = n_ignored
    dataset = MultiGranularDataset(
        samples, levels, vocab, {task: TaskSpec("multilabel", tuple(fine_vocab))}, name=f"{FMT}:{path.name}", stats=stats
    )
    problems.raise_if_any(partial=dataset)
    log.info("%s: %d samples, levels %s, %d fine labels", dataset.name, len(samples), list(levels), len(fine_vocab))
    return dataset
