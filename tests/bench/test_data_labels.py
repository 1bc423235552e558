"""NaN / inf labels and non-text text fields, in every data format: one problem per bad row naming the file,
the line (or record) and the column (or field), never an exception without them; ``data.on_bad_sample=skip``
drops exactly that row."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from bench.data import build_dataset
from bench.data.problems import DataValidationError


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def downstream(kind: str, bad: str) -> Callable[[Path], tuple[dict, Path]]:
    def make(tmp: Path):
        if kind == "multilabel":
            text = f"image,a,b\nx.png,1,0\ny.png,0,{bad}\nz.png,0,1\n"
        else:
            text = f"image,y\nx.png,1\ny.png,{bad}\nz.png,0\n"
        f = _csv(tmp / "t.csv", text)
        return {"format": "downstream_csv", "path": str(f), "task_kind": kind, "num_classes": 2}, f
    return make


def csv_multilabel(bad: str, auto: bool) -> Callable[[Path], tuple[dict, Path]]:
    def make(tmp: Path):
        f = _csv(tmp / "t.csv", f"Path,DR,AMD\nx.png,1,0\ny.png,{bad},1\nz.png,0,1\n")
        opts = {"format": "csv_multilabel", "path": str(f)}
        if not auto:
            opts["label_columns"] = ["DR", "AMD"]
        return opts, f
    return make


def jsonl(target: str) -> Callable[[Path], tuple[dict, Path]]:
    def make(tmp: Path):
        meta = {"levels": ["d"], "tasks": {"t": {"kind": "multiclass", "classes": ["n", "y"]},
                                            "m": {"kind": "multilabel", "classes": ["a", "b"]}}}
        rows = [{"meta": meta}]
        for i in range(3):
            targets = {"t": i % 2, "m": [0, 1]}
            rows.append({"id": f"s{i}", "image": f"{i}.png", "texts": {"d": "x"}, "labels": {"d": ["x"]}, "targets": targets})
        lines = [json.dumps(r) for r in rows]
        # line 3 (the second sample): a NaN / Infinity JSON literal (Python's json writes and reads them)
        lines[2] = lines[2].replace('"t": 1', f'"t": {target}') if target != "list" else lines[2].replace("[0, 1]", "[0, Infinity]")
        f = tmp / "m.jsonl"
        f.write_text("\n".join(lines) + "\n")
        return {"format": "jsonl", "path": str(f)}, f
    return make


def mgll_list(disease: str) -> Callable[[Path], tuple[dict, Path]]:
    def make(tmp: Path):
        recs = [{"ImageID": f"/All_data/D/{i}.png", "Disease": "Normal", "Description": "Clear"} for i in range(3)]
        text = json.dumps(recs).replace('"Disease": "Normal", "Description": "Clear"}, {"ImageID": "/All_data/D/2.png"',
                                        f'"Disease": {disease}, "Description": "Clear"}}, {{"ImageID": "/All_data/D/2.png"', 1)
        f = tmp / "json" / "a.json"
        f.parent.mkdir()
        f.write_text(text)
        (tmp / "2level_list_train.txt").write_text("/json/a.json\n")
        (tmp / "2level_list_val.txt").write_text("")
        return {"format": "mgll_json", "path": str(tmp), "list": "2level_list"}, f
    return make


def mgll_manifest(disease: str) -> Callable[[Path], tuple[dict, Path]]:
    def make(tmp: Path):
        train = [{"image": f"{i}.png", "Disease": "Normal", "Description": "Clear"} for i in range(3)]
        text = json.dumps({"train": train, "validation": []})
        text = text.replace('{"image": "1.png", "Disease": "Normal"', f'{{"image": "1.png", "Disease": {disease}', 1)
        f = tmp / "manifest.json"
        f.write_text(text)
        return {"format": "mgll_json", "path": str(f)}, f
    return make


@dataclass
class LabelCase:
    name: str
    make: Callable[[Path], tuple[dict, Path]]
    where: tuple  # (line or None, record or None)
    field: str
    says: str
    kept: int  # samples left with on_bad_sample=skip


CASES = [
    LabelCase("downstream_multilabel_nan", downstream("multilabel", "nan"), (3, None), "b", "'nan' in column 'b' is not 0 or 1", 2),
    LabelCase("downstream_multilabel_inf", downstream("multilabel", "inf"), (3, None), "b", "not a finite number", 2),
    LabelCase("downstream_multiclass_nan", downstream("multiclass", "NaN"), (3, None), "y", "'NaN' in column 'y' is not a class index", 2),
    LabelCase("downstream_multiclass_inf", downstream("multiclass", "inf"), (3, None), "y", "not a finite number", 2),
    LabelCase("downstream_multiclass_neg_inf", downstream("multiclass", "-inf"), (3, None), "y", "'-inf'", 2),
    LabelCase("csv_multilabel_nan", csv_multilabel("nan", auto=False), (3, None), "DR", "'nan' is not one of 1, 0, -1", 2),
    LabelCase("csv_multilabel_nan_auto_columns", csv_multilabel("NaN", auto=True), (3, None), "DR", "not a finite number", 2),
    LabelCase("csv_multilabel_inf", csv_multilabel("inf", auto=False), (3, None), "DR", "'inf'", 2),
    LabelCase("jsonl_multiclass_nan", jsonl("NaN"), (3, None), "targets.t", "class index (int), got nan", 2),
    LabelCase("jsonl_multiclass_inf", jsonl("Infinity"), (3, None), "targets.t", "got inf", 2),
    LabelCase("jsonl_multilabel_inf", jsonl("list"), (3, None), "targets.m", "list of 0/1, got [0, inf]", 2),
    LabelCase("mgll_list_nan", mgll_list("NaN"), (None, 1), "Disease", "got nan (a number: NaN/inf", 2),
    LabelCase("mgll_list_number", mgll_list("3"), (None, 1), "Disease", "got 3 (a number)", 2),
    LabelCase("mgll_list_nan_text", mgll_list('"nan"'), (None, 1), "Disease", "a missing value written as text", 2),
    LabelCase("mgll_manifest_nan", mgll_manifest("NaN"), (None, 1), "Disease", "got nan (a number", 2),
    LabelCase("mgll_manifest_number", mgll_manifest("12.5"), (None, 1), "Disease", "got 12.5 (a number)", 2),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_label_is_a_row_problem(tmp_path, case):
    opts, f = case.make(tmp_path)
    opts = {**opts, "check_images": False}
    with pytest.raises(DataValidationError) as e:
        build_dataset(opts)
    (p,) = e.value.problems
    assert p.file == str(f) and (p.line, p.record) == case.where and p.field == case.field, str(p)
    assert case.says in p.message, p.message
    assert p.skippable
    ds = build_dataset({**opts, "on_bad_sample": "skip"})
    assert len(ds) == case.kept
    for s in ds:  # nothing NaN slipped through as a target or a text
        for t in s.targets.values():
            assert all(math.isfinite(v) for v in (t if isinstance(t, tuple) else (t,)))
        assert all("nan" not in (x or "").lower() for x in s.texts.values())
