"""bench.options: one boolean, number, list, choice and unknown-key rule, and dataclass parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from bench.errors import ConfigError, DataConfigError
from bench.options import as_bool, as_float, as_int, as_list, check_known, describe, parse


@pytest.mark.parametrize("value,expected", [(True, True), (False, False), ("true", True), ("FALSE", False), (" True ", True)])
def test_bool_accepts_true_false(value, expected):
    assert as_bool("x.flag", value) is expected


@pytest.mark.parametrize("value", ["yes", "no", 1, 0, "1", None, "on", [True]])
def test_bool_rejects_everything_else(value):
    with pytest.raises(ConfigError, match=r"x\.flag=.* must be true or false") as e:
        as_bool("x.flag", value)
    assert e.value.key == "x.flag"


@pytest.mark.parametrize("value,expected", [(3, 3), (3.0, 3), ("3", 3), ("1e3", 1000)])
def test_int_whole_numbers(value, expected):
    assert as_int("train.epochs", value) == expected


@pytest.mark.parametrize("value", [3.5, "abc", True, None, "nan", [3]])
def test_int_rejects(value):
    with pytest.raises(ConfigError, match=r"train\.epochs=.* must be an integer"):
        as_int("train.epochs", value)


def test_int_bounds_name_the_key():
    with pytest.raises(ConfigError, match=r"train\.epochs=0 must be >= 1"):
        as_int("train.epochs", 0, min=1)


@pytest.mark.parametrize("value,expected", [(1, 1.0), ("1e-3", 1e-3), (2.5, 2.5)])
def test_float(value, expected):
    assert as_float("train.lr", value) == expected


@pytest.mark.parametrize("value,msg", [(-1, "must be > 0"), ("inf", "finite"), (True, "must be a number"), ("x", "must be a number")])
def test_float_rejects(value, msg):
    with pytest.raises(ConfigError, match=msg):
        as_float("train.lr", value, min=0, min_open=True)


def test_list_single_item_and_items_checked():
    assert as_list("objective.terms", "sclip") == ["sclip"]
    with pytest.raises(ConfigError, match=r"w\[1\]='x' must be a number"):
        as_list("w", [1, "x"], lambda k, v: as_float(k, v))


def test_unknown_key_did_you_mean_and_allowed():
    with pytest.raises(DataConfigError) as e:
        check_known(["workrs"], ["workers", "format"], prefix="data.", owner="data.format=jsonl", error=DataConfigError)
    msg = str(e.value)
    assert "data.workrs is not an option of data.format=jsonl" in msg
    assert "did you mean data.workers" in msg and "allowed: data.workers, data.format" in msg


@dataclass
class _Opts:
    target: str
    n: int = field(default=3, metadata={"min": 1, "help": "how many"})
    frac: float = field(default=1.0, metadata={"min": 0, "max": 1, "min_open": True})
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    levels: tuple[str, ...] | None = None
    weights: tuple[float, float] = (1.0, 2.0)
    freeze: bool | int = False
    extra: dict = field(default_factory=dict)
    anything: Any = None


def test_parse_dataclass_coerces_and_checks():
    o = parse(_Opts, {"target": "t", "n": "4", "frac": "0.5", "mode": "b", "flag": "true", "levels": "x",
                      "weights": [1, 3], "freeze": 2}, prefix="tasks[0].")
    assert (o.n, o.frac, o.mode, o.flag, o.levels, o.weights, o.freeze) == (4, 0.5, "b", True, ("x",), (1.0, 3.0), 2)
    assert parse(_Opts, {"target": "t", "freeze": "true"}).freeze is True


@pytest.mark.parametrize("given,msg", [
    ({}, r"tasks\[0\]\.target is required"),
    ({"target": "t", "n": 0}, r"tasks\[0\]\.n=0 must be >= 1"),
    ({"target": "t", "frac": 0}, r"tasks\[0\]\.frac=0 must be in \(0, 1\]"),
    ({"target": "t", "mode": "c"}, r"tasks\[0\]\.mode='c' is not allowed; allowed: a, b"),
    ({"target": "t", "flag": "yes"}, "must be true or false"),
    ({"target": "t", "weights": [1]}, "must be a list of 2 values"),
    ({"target": "t", "extra": 3}, "must be a mapping"),
    ({"target": "t", "nn": 3}, r"tasks\[0\]\.nn is not an option .*did you mean tasks\[0\]\.n\b"),
])
def test_parse_dataclass_errors(given, msg):
    with pytest.raises(ConfigError, match=msg):
        parse(_Opts, given, prefix="tasks[0].", owner="task linear_probe")


def test_unknown_annotation_is_a_programming_error():
    @dataclass
    class Bad:
        x: complex = 1j

    with pytest.raises(TypeError, match="annotation"):
        parse(Bad, {"x": 2})


def test_describe_lists_help_and_defaults():
    rows = {r.key: r for r in describe(_Opts, "t.")}
    assert rows["t.n"].help == "how many" and rows["t.n"].default == 3 and rows["t.n"].type == "an integer"
    assert rows["t.target"].default == "(required)"
