"""The registry: names, build-time option validation, the attributes the training loop reads."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

import objectives
from objectives import ObjectiveConfigError, ObjectiveInputError
from obj_helpers import make_batch

NAMES = ["clip", "siglip", "clip_multipositive", "soft_clip", "unicl", "flair", "medclip", "mgll", "mgll_released"]


def test_every_name_is_registered_and_builds_a_module():
    assert set(NAMES) <= set(objectives.OBJECTIVES)
    for name in NAMES:
        obj = objectives.build(name)
        assert isinstance(obj, torch.nn.Module)
        assert isinstance(obj, objectives.OBJECTIVES[name])
    assert objectives.OBJECTIVES["unicl"] is objectives.OBJECTIVES["soft_clip"] is objectives.OBJECTIVES["flair"]


def test_unknown_name_lists_known_names_and_close_matches():
    with pytest.raises(ObjectiveConfigError) as err:
        objectives.build("mgl")
    msg = str(err.value)
    assert "'mgl'" in msg and "mgll" in msg and "did you mean" in msg
    for name in NAMES:
        assert name in msg
    assert isinstance(err.value, ValueError)


def test_unknown_option_names_the_key_and_the_allowed_keys():
    with pytest.raises(ObjectiveConfigError) as err:
        objectives.build("mgll", term=["sclip"])
    msg = str(err.value)
    assert "'mgll'" in msg and "'term'" in msg and "terms" in msg and "weights" in msg and "chunk_size" in msg


@pytest.mark.parametrize(
    "name,options,fragment",
    [
        ("mgll", dict(terms=["sclip", "kl"]), "terms"),
        ("mgll", dict(terms=[]), "terms"),
        ("mgll", dict(terms=["skl"], levels=["disease"]), "skl"),
        ("mgll", dict(levels=["disease"]), "skl"),  # default terms include skl
        ("mgll", dict(weights=[1, 2]), "weights"),
        ("mgll", dict(weights=[1, 2, float("nan")]), "weights"),
        ("mgll", dict(target="cosine"), "target"),
        ("mgll", dict(pointwise_target="hard"), "pointwise_target"),
        ("mgll", dict(soft_labels="yes"), "soft_labels"),
        ("mgll", dict(levels=["a", "a"]), "levels"),
        ("mgll", dict(chunk_size=-1), "chunk_size"),
        ("mgll", dict(chunk_size=2.5), "chunk_size"),
        ("clip", dict(local_loss=1), "local_loss"),
        ("soft_clip", dict(target="cosine"), "target"),
        ("siglip", dict(target="overlap"), "target"),
        ("mgll_released", dict(levels=["a"]), "levels"),
        ("mgll_released", dict(levels=["a", "b", "c"]), "levels"),
    ],
)
def test_bad_options_fail_at_build_time(name, options, fragment):
    with pytest.raises(ObjectiveConfigError) as err:
        objectives.build(name, **options)
    msg = str(err.value)
    assert f"'{name}'" in msg and fragment in msg
    assert err.value.objective == name


def test_skl_error_says_what_is_allowed():
    with pytest.raises(ObjectiveConfigError) as err:
        objectives.build("mgll", terms=["skl"], levels=["disease"])
    assert "allowed" in str(err.value) and "two" in str(err.value)


def test_alias_error_names_the_alias():
    with pytest.raises(ObjectiveConfigError, match="unicl"):
        objectives.build("unicl", target="x")


def test_omegaconf_lists_are_accepted():
    cfg = OmegaConf.create(
        {"terms": ["sclip", "pointwise"], "weights": [0.5, 1, 1], "levels": ["disease", "description"]}
    )
    obj = objectives.build("mgll", **cfg)
    assert obj.opt.terms == ("sclip", "pointwise") and obj.opt.weights == (0.5, 1.0, 1.0)
    assert obj.opt.levels == ("disease", "description")
    obj2 = objectives.build("mgll", **OmegaConf.to_container(cfg))
    assert obj2.opt == obj.opt
    image, texts, ids, s = make_batch()
    assert torch.isfinite(obj(image, texts, ids, s)["loss"])


def test_skl_with_a_one_level_batch_fails_at_the_call():
    image, texts, ids, s = make_batch(levels=("disease",))
    with pytest.raises(ObjectiveConfigError, match="skl"):
        objectives.build("mgll")(image, texts, ids, s)
    out = objectives.build("mgll", terms=["sclip", "pointwise"])(image, texts, ids, s)
    assert set(out) == {"loss", "sclip/disease", "pointwise/disease"}


def test_training_loop_attributes():
    assert objectives.build("siglip").needs_logit_bias
    assert not objectives.build("clip").needs_logit_bias
    assert objectives.build("clip").init_logit_scale is None
    assert objectives.build("siglip").init_logit_scale == 10.0 and objectives.build("siglip").init_logit_bias == -10.0
    assert objectives.build("medclip").wants_multi_hot
    assert objectives.build("mgll", target="jaccard").wants_multi_hot
    assert not objectives.build("mgll", target="jaccard", soft_labels=False).wants_multi_hot
    assert not objectives.build("mgll").wants_multi_hot
    assert objectives.build("soft_clip", target="jaccard").wants_multi_hot
    assert not objectives.build("siglip", target="jaccard").wants_multi_hot  # labels unused
    assert objectives.build("siglip", use_labels=True, target="jaccard").wants_multi_hot


def test_levels_used():
    avail = ["disease", "description", "extra"]
    assert objectives.build("clip").levels_used(avail) == ["disease"]
    assert objectives.build("clip", level="description").levels_used(avail) == ["description"]
    assert objectives.build("mgll").levels_used(avail) == avail
    assert objectives.build("mgll", levels=["description", "disease"]).levels_used(avail) == ["description", "disease"]
    assert objectives.build("soft_clip").levels_used(avail) == avail
    assert objectives.build("medclip").levels_used(avail) == ["disease"]
    assert objectives.build("mgll_released").levels_used(avail[:2]) == avail[:2]
    with pytest.raises(ObjectiveConfigError, match="two"):
        objectives.build("mgll_released").levels_used(avail)


def test_multi_hot_required_but_ids_given():
    image, texts, ids, s = make_batch(levels=("findings",))
    with pytest.raises(ObjectiveInputError, match="multi-hot"):
        objectives.build("medclip")(image, texts, ids, s)
    with pytest.raises(ObjectiveInputError, match="multi-hot"):
        objectives.build("soft_clip", target="jaccard")(image, texts, ids, s)


def test_level_missing_from_the_batch():
    image, texts, ids, s = make_batch(levels=("disease",))
    with pytest.raises(ObjectiveConfigError, match="description"):
        objectives.build("clip", level="description")(image, texts, ids, s)


def test_bad_shapes_are_reported():
    image, texts, ids, s = make_batch(levels=("disease",))
    with pytest.raises(ObjectiveInputError, match="texts"):
        objectives.build("clip")(image, {"disease": texts["disease"][:3]}, ids, s)
    with pytest.raises(ObjectiveInputError, match="labels"):
        objectives.build("soft_clip")(image, texts, {"disease": ids["disease"][:3]}, s)
    with pytest.raises(ObjectiveInputError, match="needs labels"):
        objectives.build("soft_clip")(image, texts, None, s)


def test_logit_scale_as_python_number_and_labels_optional_for_clip():
    image, texts, _, _ = make_batch(levels=("disease",))
    a = objectives.build("clip")(image, texts, None, 3.0)["loss"]
    b = objectives.build("clip")(image, texts, {}, torch.tensor([3.0], dtype=torch.float64))["loss"]
    torch.testing.assert_close(a, b)
