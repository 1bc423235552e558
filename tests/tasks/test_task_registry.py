"""The registry: names, build-time option validation, error messages."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

import tasks
from tasks import TASKS, TaskConfigError, build, register
from tasks.base import Task


def test_registry_has_the_four_tasks():
    assert {"linear_probe", "finetune", "zeroshot", "retrieval"} <= set(TASKS)
    for name, cls in TASKS.items():
        assert cls.name == name
    assert TASKS["linear_probe"].needs_target and not TASKS["retrieval"].needs_target
    assert issubclass(TaskConfigError, ValueError)


def test_build_returns_configured_instances():
    lp = build("linear_probe", target="disease_multilabel", label_fraction=0.1, c_grid=[0.1, 1])
    assert lp.options.label_fraction == 0.1 and lp.options.c_grid == (0.1, 1.0)
    assert len(build("linear_probe", target="x").options.c_grid) == 10
    assert build("finetune", target="dr_grade").options.epochs == 3
    assert build("zeroshot", target="glaucoma", prompt="a fundus photograph showing {}").options.prompt == (
        "a fundus photograph showing {}",
    )
    assert build("retrieval").options.ks == (1, 5, 10)


def test_unknown_task_names_close_matches():
    with pytest.raises(TaskConfigError, match=r"linar_probe.*did you mean 'linear_probe'.*allowed") as e:
        build("linar_probe", target="x")
    assert e.value.task == "linar_probe" and e.value.option is None


def test_unknown_option_names_task_option_and_allowed():
    with pytest.raises(TaskConfigError) as e:
        build("linear_probe", target="x", c_grd=[1.0])
    msg = str(e.value)
    assert "linear_probe" in msg and "c_grd" in msg and "did you mean c_grid?" in msg and "label_fraction" in msg
    assert e.value.option == "c_grd"


@pytest.mark.parametrize(
    "name, options, option",
    [
        ("linear_probe", {}, "target"),
        ("linear_probe", {"target": "x", "label_fraction": 0}, "label_fraction"),
        ("linear_probe", {"target": "x", "label_fraction": 1.5}, "label_fraction"),
        ("linear_probe", {"target": "x", "c_grid": []}, "c_grid"),
        ("linear_probe", {"target": "x", "c_grid": [1, -1]}, "c_grid"),
        ("linear_probe", {"target": "x", "select_metric": "aucc"}, "select_metric"),
        ("linear_probe", {"target": "x", "solver": "saga"}, "solver"),
        ("linear_probe", {"target": "x", "batch_size": 0}, "batch_size"),
        ("linear_probe", {"target": "x", "seed": 1.5}, "seed"),
        ("finetune", {"target": "x", "epochs": 0}, "epochs"),
        ("finetune", {"target": "x", "lr": -1}, "lr"),
        ("finetune", {"target": "x", "augment": "maybe"}, "augment"),
        ("zeroshot", {"target": "x", "prompt": "no placeholder"}, "prompt"),
        ("zeroshot", {"target": "x", "prompt": ["{}", "{} and {}"]}, "prompt"),
        ("zeroshot", {"target": "x", "multilabel_rule": "sigmoid"}, "multilabel_rule"),
        ("retrieval", {"ks": [0, 1]}, "ks"),
        ("retrieval", {"level": "a", "target": "b"}, "target"),
    ],
)
def test_bad_values_fail_at_build_time(name, options, option):
    with pytest.raises(TaskConfigError) as e:
        build(name, **options)
    assert e.value.option == option and e.value.task == name
    assert option in str(e.value)


def test_choice_error_lists_allowed_and_close_match():
    with pytest.raises(TaskConfigError, match=r"select_metric='aux' is not allowed \(did you mean auc\?\); allowed: auc, map, acc, f1"):
        build("linear_probe", target="x", select_metric="aux")


def test_yaml_values_are_accepted():
    cfg = OmegaConf.create({"c_grid": [0.01, "1e-1", 10], "label_fraction": "0.5", "standardize": "false"})
    lp = build("linear_probe", target="x", **cfg)
    assert lp.options.c_grid == (0.01, 0.1, 10.0)
    assert lp.options.label_fraction == 0.5 and lp.options.standardize is False


def test_retrieval_target_is_an_alias_of_level():
    assert build("retrieval", target="description").options.level == "description"


def test_register_decorator_adds_a_task():
    @register("dummy_task_for_test")
    class Dummy(Task):
        needs_target = False

        @dataclasses.dataclass
        class Options:
            k: int = 1

        def run(self, model, splits, cache=None):
            return {"k": self.options.k}

    try:
        assert tasks.build("dummy_task_for_test", k=3).run(None, {}) == {"k": 3}
        with pytest.raises(TaskConfigError, match="j is not an option; allowed: k"):
            tasks.build("dummy_task_for_test", j=3)
    finally:
        TASKS.pop("dummy_task_for_test")


def test_unknown_target_at_run_time_names_available_targets(colour_model, colour_splits):
    splits = colour_splits("multiclass")
    with pytest.raises(TaskConfigError, match=r"colr.*did you mean 'colour'"):
        build("linear_probe", target="colr").run(colour_model(), splits)


def test_missing_split_is_reported(colour_model, colour_splits):
    splits = colour_splits("multiclass")
    del splits["val"]
    with pytest.raises(ValueError, match=r"needs the split\(s\) \['val'\]"):
        build("linear_probe", target="colour").run(colour_model(), splits)
    # a fixed C needs no val split
    assert build("linear_probe", target="colour", c=1.0).run(colour_model(), splits)["c"] == 1.0
