"""``mgll_json``: the MGLL release's pretraining data (JSON lists) and the third-party manifest JSON.

List layout (``data.path=<data dir> data.list=<list name>``): ``<data dir>/<list>_train.txt`` and
``<list>_val.txt`` name JSON files (one per line, relative to the data dir; a leading ``/`` as in the release
is allowed); each JSON file is an array of records, and the arrays are concatenated. ``_train`` -> split
``train``, ``_val`` -> ``val`` (there is no test split in pretraining lists).

Record schema, chosen by ``data.schema`` (default from the list name, as the MGLL code does):

- ``fundus`` (``2level_list``, ``2level_multi_disease_list``): ``ImageID``, ``Disease``, ``Description`` ->
  level ``disease``: text ``"This is a fundus image of " + Disease``, labels = the comma-separated parts of
  ``Disease``, stripped (e.g. ``("Abnormal", "Mild NPDR")``); level ``description``: text = ``Description``,
  labels = the whole ``Description`` as one label (``data.description_labels=comma`` splits it at commas
  outside parentheses instead).
- ``fundus_keyword`` (``original_list``, ``only_FIVES_list``, ``flair_list``): ``ImageID``, ``Keyword`` ->
  level ``disease`` only, built from ``Keyword`` as above.
- ``xray`` (``MIDRC_list``): ``ImageID``, ``modality``, ``study_description_0``, ``series_description`` ->
  levels ``modality`` (text ``"This is a {modality} image."``), ``study`` and ``series`` (the field's text);
  each level's label is its raw field value.

Images (``data.image_rule``): ``npz`` (default for fundus schemas) = the release's rule
``data_dir + '/All_data_npz' + splitext(ImageID[9:])[0] + '.npz'``, array key ``image``; ``verbatim``
(default for ``xray``) = ``ImageID`` is the path (absolute, or relative), any format ``load_image`` reads.
``data.image_root`` (default: the data dir) replaces the data dir in both rules.

Manifest (``data.path=<manifest>.json``): an object with arrays ``train`` and ``validation`` (at the top or
under ``splits``); each record names its image in the first non-empty field among ``image_path``, ``path``,
``image``, ``ImageID``, ``url`` (relative paths are taken from ``data.image_root``, default the manifest's
folder), and carries ``Disease``/``Description`` (or lowercase) itself or in ``annotations``: a list of
``{Disease, Description}``, flattened to one sample per annotation (id ``<id or image>#<k>``). Levels and
texts as for ``fundus``.

Sample ids: ``ImageID`` (lists; a repeated ImageID gets ``#2``, ``#3``... in reading order) or the record's
``id``/image field (manifest).

Text fields (``Disease``, ``Description``, ``Keyword``, ``modality``, ...) must be non-empty strings: a
number, a JSON ``NaN``/``Infinity`` or the text ``nan`` (a missing value written by pandas) is a problem
naming the file, record and field, which ``data.on_bad_sample=skip`` can skip. ``ImageID`` may be an integer.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .options import choice, existing_path, take
from .paths import IMAGE_RULES, image_path, resolve
from .problems import Problem, ProblemLog
from .registry import DataConfigError, register_format
from .sample import Origin, Sample
from .dataset import MultiGranularDataset

log = logging.getLogger(__name__)

FMT = "mgll_json"
PROMPT = "This is a fundus image of "
SCHEMA_OF_LIST = {
    "2level_list": "fundus",
    "2level_multi_disease_list": "fundus",
    "original_list": "fundus_keyword",
    "only_FIVES_list": "fundus_keyword",
    "flair_list": "fundus_keyword",
    "MIDRC_list": "xray",
}
SCHEMAS = ("fundus", "fundus_keyword", "xray")
LEVELS = {"fundus": ("disease", "description"), "fundus_keyword": ("disease",), "xray": ("modality", "study", "series")}
FIELDS = {
    "fundus": ("ImageID", "Disease", "Description"),
    "fundus_keyword": ("ImageID", "Keyword"),
    "xray": ("ImageID", "modality", "study_description_0", "series_description"),
}
MANIFEST_IMAGE_FIELDS = ("image_path", "path", "image", "ImageID", "url")
MANIFEST_SPLITS = {"train": "train", "validation": "val"}
DESCRIPTION_LABELS = ("whole", "comma")



@dataclass
class Options:
    path: str = field(metadata={"help": "the MGLL data folder (with data.list) or a manifest JSON file"})
    list: Optional[str] = field(default=None, metadata={"help": "list name of the release (<path>/<list>_train.txt, _val.txt)"})
    schema: Optional[str] = field(default=None, metadata={
        "help": "record schema (default: from the list name)", "choices": [*SCHEMAS]})
    image_rule: Optional[str] = field(default=None, metadata={
        "help": "how ImageID maps to a file (default: npz, verbatim for xray)", "choices": [*IMAGE_RULES]})
    image_root: Optional[str] = field(default=None, metadata={"help": "folder image paths are relative to (default: data.path)"})
    description_labels: str = field(default="whole", metadata={
        "help": "labels of the description level: the whole text, or its comma-separated parts",
        "choices": [*DESCRIPTION_LABELS]})


def _parts(text: str) -> tuple[str, ...]:
    """Comma-separated parts, stripped, empty parts and repeats dropped, order kept."""
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))


def _parts_outside_parens(text: str) -> tuple[str, ...]:
    pieces, depth, cur = [], 0, []
    for ch in text:
        depth += ch == "("
        depth -= ch == ")" and depth > 0
        if ch == "," and depth == 0:
            pieces.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    pieces.append("".join(cur))
    return tuple(dict.fromkeys(p.strip() for p in pieces if p.strip()))


def _disease(value: str) -> tuple[str, tuple[str, ...]]:
    return PROMPT + value, _parts(value)


def _description(value: str, mode: str) -> tuple[str, tuple[str, ...]]:
    return value, (_parts_outside_parens(value) if mode == "comma" else (value.strip(),))


def _texts(schema: str, values: dict[str, str], description_labels: str):
    """texts, labels for one record whose required fields are present."""
    if schema == "xray":
        m, st, se = values["modality"], values["study_description_0"], values["series_description"]
        texts = {"modality": f"This is a {m} image.", "study": st, "series": se}
        labels = {"modality": (m.strip(),), "study": (st.strip(),), "series": (se.strip(),)}
        return texts, labels
    key = "Keyword" if schema == "fundus_keyword" else "Disease"
    t, lab = _disease(values[key])
    texts, labels = {"disease": t}, {"disease": lab}
    if schema == "fundus":
        t, lab = _description(values["Description"], description_labels)
        texts["description"], labels["description"] = t, lab
    return texts, labels


def _text(v: Any) -> str | None:
    """A text field's value: a non-empty string that is not ``nan`` (a missing value written by pandas);
    anything else (numbers, NaN, booleans, lists) is None."""
    if not isinstance(v, str) or not v.strip() or v.strip().lower() == "nan":
        return None
    return v


def _field(record: dict, name: str) -> str | None:
    v = record.get(name)
    if name == "ImageID" and isinstance(v, int) and not isinstance(v, bool):
        return str(v)  # an integer image id names a file as well as a string does
    return _text(v)


def _what(v: Any) -> str:
    """``nan (a number)`` etc. for messages about a value that is not a text."""
    if isinstance(v, bool):
        return f"{v!r} (a boolean)"
    if isinstance(v, (int, float)):
        return f"{v!r} (a number{'' if math.isfinite(v) else ': NaN/inf, a missing value?'})"
    if isinstance(v, str) and v.strip().lower() == "nan":
        return f"{v!r} (a missing value written as text)"
    return repr(v)


def _read_json(path: Path, where: Origin, problems: ProblemLog) -> Any:
    if not path.is_file():
        problems.add(Problem(where.file, None, f"listed JSON file not found: {path}", line=where.line))
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problems.add(Problem(str(path), None, f"not valid JSON: {e}"))
        return None


def _check_text_value(problems, origin, sid, field, value, record) -> None:
    if field in record and record[field] is not None and value is None:
        problems.add(Problem.at(origin, field, f"field {field!r} must be a non-empty string, got {_what(record[field])}", sid))
    elif value is None:
        problems.add(Problem.at(origin, field, f"missing field {field!r}", sid))


def _from_lists(data_dir: Path, list_name: str, schema: str, rule: str, image_root: Path, description_labels: str):
    problems = ProblemLog()
    samples: list[Sample] = []
    seen: Counter[str] = Counter()
    split_of_image: dict[str, set[str]] = {}
    for suffix, split in (("_train.txt", "train"), ("_val.txt", "val")):
        list_file = data_dir / f"{list_name}{suffix}"
        if not list_file.is_file():
            raise DataConfigError(
                f"data.format={FMT}: list file {list_file} not found (data.path={str(data_dir)!r}, "
                f"data.list={list_name!r}; expected {list_name}_train.txt and {list_name}_val.txt)"
            )
        for lineno, line in enumerate(list_file.read_text().splitlines(), start=1):
            rel = line.strip()
            if not rel:
                continue
            json_path = data_dir / rel.lstrip("/")
            records = _read_json(json_path, Origin(str(list_file), line=lineno), problems)
            if records is None:
                continue
            if not isinstance(records, list):
                problems.add(Problem(str(json_path), None, f"must be a JSON array of records, got {type(records).__name__}"))
                continue
            for k, rec in enumerate(records):
                origin = Origin(str(json_path), record=k, image_field="ImageID")
                if not isinstance(rec, dict):
                    problems.add(Problem.at(origin, None, f"record must be an object, got {rec!r}", f"{json_path}[{k}]"))
                    continue
                values = {f: _field(rec, f) for f in FIELDS[schema]}
                image_id = values["ImageID"]
                sid = image_id or f"{json_path}[{k}]"
                bad = len(problems)
                for f, v in values.items():
                    _check_text_value(problems, origin, sid, f, v, rec)
                if len(problems) > bad:
                    continue
                texts, labels = _texts(schema, values, description_labels)
                for level, labs in labels.items():
                    if not labs:
                        problems.add(Problem.at(origin, FIELDS[schema][1], f"empty label set at level {level!r}", sid))
                if len(problems) > bad:
                    continue
                seen[image_id] += 1
                sample_id = image_id if seen[image_id] == 1 else f"{image_id}#{seen[image_id]}"
                split_of_image.setdefault(image_id, set()).add(split)
                samples.append(
                    Sample(sample_id, image_path(rule, image_root, image_id), texts, labels, split=split, origin=origin)
                )
    repeated = sum(1 for c in seen.values() if c > 1)
    if repeated:
        log.info("%s: %d image(s) have several records; their ids get '#2', '#3', ...", list_name, repeated)
    both = sum(1 for s in split_of_image.values() if len(s) > 1)
    if both:
        log.warning("%s: %d image(s) appear in both the _train and the _val list", list_name, both)
    return samples, problems


def _manifest_records(manifest: Any, path: Path, key: str) -> list:
    if not isinstance(manifest, dict):
        raise DataConfigError(f"{path}: a manifest must be a JSON object with arrays 'train' and 'validation'")
    if key in manifest:
        records = manifest[key]
    elif isinstance(manifest.get("splits"), dict) and key in manifest["splits"]:
        records = manifest["splits"][key]
    else:
        found = sorted(manifest) + [f"splits.{k}" for k in sorted(manifest.get("splits") or {})]
        raise DataConfigError(f"{path}: manifest has no split {key!r} (at the top or under 'splits'); it has keys {found}")
    if not isinstance(records, list):
        raise DataConfigError(f"{path} [{key}]: must be an array of records, got {type(records).__name__}")
    return records


def _ann_field(ann: dict, record: dict, name: str) -> tuple[str | None, Any]:
    """The text of ``name`` (or its lowercase) in the annotation, else the record (None when it is not a
    text, see :func:`_text`), and the raw value found (None when absent)."""
    for src in (ann, record):
        for k in (name, name.lower()):
            if k in src and src[k] is not None:
                return _text(src[k]), src[k]
    return None, None


def _from_manifest(path: Path, image_root: Path, description_labels: str):
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataConfigError(f"{path}: not valid JSON: {e}") from e
    problems = ProblemLog()
    samples: list[Sample] = []
    for key, split in MANIFEST_SPLITS.items():
        for k, rec in enumerate(_manifest_records(manifest, path, key)):
            if not isinstance(rec, dict):
                problems.add(Problem(str(path), key, f"{key} record {k} must be an object, got {rec!r}", record=k, sample=f"{key}[{k}]"))
                continue
            field = next((f for f in MANIFEST_IMAGE_FIELDS if isinstance(rec.get(f), str) and rec[f].strip()), None)
            origin = Origin(str(path), record=k, image_field=field)
            base = str(rec["id"]) if rec.get("id") not in (None, "") else (rec[field] if field else f"{key}[{k}]")
            if field is None:
                problems.add(Problem.at(origin, "|".join(MANIFEST_IMAGE_FIELDS), f"{key} record {k} has no image path field "
                                        f"(one of {list(MANIFEST_IMAGE_FIELDS)})", base))
                continue
            anns = rec.get("annotations")
            if anns is not None and not isinstance(anns, list):
                problems.add(Problem.at(origin, "annotations", f"'annotations' must be a list of objects, got {anns!r}", base))
                continue
            anns = anns if anns else [rec]
            for j, ann in enumerate(anns):
                sid = base if len(anns) == 1 else f"{base}#{j}"
                if not isinstance(ann, dict):
                    problems.add(Problem.at(origin, f"annotations[{j}]", f"annotation must be an object, got {ann!r}", sid))
                    continue
                values = {}
                for name in ("Disease", "Description"):
                    v, raw = _ann_field(ann, rec, name)
                    if v is None:
                        what = f"must be a non-empty string, got {_what(raw)}" if raw is not None else "is missing"
                        where = f"annotations[{j}].{name}" if ann is not rec else name
                        problems.add(Problem.at(origin, where, f"{key} record {k}: field {name!r} {what}", sid))
                    values[name] = v
                if None in values.values():
                    continue
                texts, labels = _texts("fundus", values, description_labels)
                if not labels["disease"]:
                    problems.add(Problem.at(origin, "Disease", f"{key} record {k}: empty label set at level 'disease'", sid))
                    continue
                img = resolve(image_root, rec[field].strip())
                samples.append(Sample(sid, img, texts, labels, split=split, origin=origin))
    return samples, problems


@register_format(FMT, options=Options)
def build(**options: Any) -> MultiGranularDataset:
    opt = take(FMT, options, Options)
    path = existing_path(FMT, "path", opt["path"])
    description_labels = opt["description_labels"]
    if path.is_file():
        if opt["list"] is not None or opt["schema"] not in (None, "fundus") or opt["image_rule"] not in (None, "verbatim"):
            raise DataConfigError(
                f"data.format={FMT}: data.path={str(path)!r} is a manifest file; data.list, data.schema and "
                "data.image_rule apply to the list layout (data.path=<data dir> data.list=<list name>)"
            )
        image_root = Path(opt["image_root"]) if opt["image_root"] else path.parent
        samples, problems = _from_manifest(path, image_root, description_labels)
        levels, name = LEVELS["fundus"], f"{FMT}:{path.name}"
    else:
        list_name = opt["list"]
        if not list_name:
            raise DataConfigError(
                f"data.format={FMT}: data.path={str(path)!r} is a folder, so data.list=<list name> is required "
                f"(e.g. {sorted(SCHEMA_OF_LIST)}), or give data.path=<manifest.json>"
            )
        schema = opt["schema"] or SCHEMA_OF_LIST.get(str(list_name))
        if schema is None:
            raise DataConfigError(
                f"data.format={FMT}: data.list={list_name!r} is not a list name the MGLL release knows "
                f"({sorted(SCHEMA_OF_LIST)}); set data.schema to one of {list(SCHEMAS)}"
            )
        choice(FMT, "schema", schema, SCHEMAS)
        rule = opt["image_rule"] or ("verbatim" if schema == "xray" else "npz")
        choice(FMT, "image_rule", rule, IMAGE_RULES)
        image_root = Path(opt["image_root"]) if opt["image_root"] else path
        samples, problems = _from_lists(path, str(list_name), schema, rule, image_root, description_labels)
        levels, name = LEVELS[schema], f"{FMT}:{list_name}"
    dataset = MultiGranularDataset(samples, levels, name=name)
    problems.raise_if_any(partial=dataset)
    log.info("%s: %d samples (%s)", name, len(samples), dict(Counter(s.split for s in samples)))
    return dataset
