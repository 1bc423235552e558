"""Zero-shot on a stand-in whose text and image embeddings are designed to match."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tasks import TaskConfigError, build
from tasks.zeroshot import best_thresholds

ONE_HOT = {"red": [1, 0, 0], "green": [0, 1, 0], "blue": [0, 0, 1]}


def test_multiclass_matching_prompts_are_perfect(colour_model, colour_splits):
    model = colour_model({f"a photo of {k}": v for k, v in ONE_HOT.items()})
    m = build("zeroshot", target="colour", prompt="a photo of {}").run(model, colour_splits("multiclass"))
    assert m["acc"] == 1.0 and m["auc"] == 1.0 and m["logit_scale"] == 10.0
    assert set(model.texts_encoded) == {"a photo of red", "a photo of green", "a photo of blue"}


def test_classnames_override_and_wrong_names_fail(colour_model, colour_splits):
    model = colour_model(ONE_HOT)
    swapped = build("zeroshot", target="colour", classnames=["green", "blue", "red"]).run(model, colour_splits("multiclass"))
    assert swapped["acc"] == 0.0  # every class prompt points at another colour
    with pytest.raises(TaskConfigError, match="classnames"):
        build("zeroshot", target="colour", classnames=["red"]).run(model, colour_splits("multiclass"))


def test_prompt_ensemble_averages_templates(colour_model, colour_splits):
    vectors = {f"{t} {k}": v for k, v in ONE_HOT.items() for t in ("a", "the")}
    model = colour_model(vectors)
    m = build("zeroshot", target="colour", prompt=["a {}", "the {}"]).run(model, colour_splits("multiclass"))
    assert m["acc"] == 1.0 and m["prompt"] == "a {} | the {}"
    assert len(set(model.texts_encoded)) == 6


# Multi-label: image features (r, g, b, 100), bright channels 200 +- 15, dim ones 40 +- 15. With one-hot
# prompts, cos(image, "red") = r / |x| >= 185 / |(185, 215, 215, 100)| = 0.50 when red is bright and
# <= 55 / |(55, 25, 25, 100)| = 0.46 when dim: separable per label, whatever the other labels.
ONE_HOT4 = {"red": [1, 0, 0, 0], "green": [0, 1, 0, 0], "blue": [0, 0, 1, 0]}


def test_multilabel_val_thresholds(colour_model, colour_splits):
    splits = colour_splits("multilabel")
    model = colour_model(ONE_HOT4, offset=100.0)
    m = build("zeroshot", target="channels").run(model, splits)
    assert m["auc"] == 1.0 and m["acc"] > 0.97 and m["multilabel_rule"] == "val"
    # AUC is the AUC of the plain cosine similarity (one-hot prompts: cosine = channel / norm)
    test = splits["test"]
    feats = np.stack([np.r_[test.image(i).reshape(-1, 3).mean(0), 100.0] for i in range(len(test))])
    cos = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    y = test.task_targets("channels")
    assert m["auc"] == pytest.approx(np.mean([roc_auc_score(y[:, j], cos[:, j]) for j in range(3)]))
    # a prompt pointing the wrong way ranks backwards
    flipped = colour_model({"red": [0, 0, 0, 1], "green": [0, 1, 0, 0], "blue": [0, 0, 1, 0]}, offset=100.0)
    assert build("zeroshot", target="channels").run(flipped, splits)["auc"] < 0.75


def test_multilabel_negative_prompts(colour_model, colour_splits):
    # "no <colour>" points at the constant feature: cos(pos) - cos(neg) = (channel - 100) / |x|, positive
    # exactly when the channel is bright
    vectors = dict(ONE_HOT4)
    vectors.update({f"no {c}": [0, 0, 0, 1] for c in ONE_HOT4})
    model = colour_model(vectors, offset=100.0)
    m = build("zeroshot", target="channels", multilabel_rule="negative").run(model, colour_splits("multilabel"))
    assert m["auc"] == 1.0 and m["acc"] == 1.0 and m["multilabel_rule"] == "negative"
    assert {"no red", "no green", "no blue"} <= set(model.texts_encoded)


def test_level_prompts_use_train_texts(colour_model, colour_splits):
    model = colour_model(ONE_HOT)
    m = build("zeroshot", target="colour", level="colour").run(model, colour_splits("multiclass"))
    assert m["acc"] == 1.0 and m["prompt_source"] == "level:colour"
    assert set(model.texts_encoded) == {"red", "green", "blue"}
    with pytest.raises(TaskConfigError, match="level"):
        build("zeroshot", target="colour", level="nope").run(model, colour_splits("multiclass"))


def test_best_thresholds_by_hand():
    sim = np.array([[0.9, 0.1], [0.7, 0.2], [0.4, 0.3], [0.2, 0.4]])
    y = np.array([[1, 0], [1, 0], [0, 0], [0, 1]])
    t = best_thresholds(sim, y)
    assert t[0] == pytest.approx(0.55)  # between 0.7 (pos) and 0.4 (neg): all right
    assert t[1] == pytest.approx(0.35)  # only the top (0.4) is positive
    # a label with no positive on val: threshold above every value (predict none)
    t = best_thresholds(sim, np.zeros_like(y))
    assert np.all(t > sim.max(0))
