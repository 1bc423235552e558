"""Zero-shot classification with the text tower.

Class embeddings: each class's prompt texts are encoded, L2-normalised, averaged and re-normalised (CLIP's
prompt ensembling). The prompt texts are either

- ``level`` unset (default): ``template.format(class_name)`` for every template in ``prompt`` (a string or a
  list; e.g. ``"{}"`` or ``"a fundus photograph showing {}"``), class names from the target's ``TaskSpec``
  or from ``classnames``; or
- ``level`` set: the texts written at that granularity for the class in the *train* split (text prototypes;
  this uses train labels to pick texts, so it is "zero-shot" only in that no classifier is trained).
  Multi-class: the texts of the train samples of the class. Multi-label: the texts of the train samples
  whose only positive label is this one, or, if there are none, of all train samples positive for it. Each
  distinct string is weighted by how often it occurs. A class with no text falls back to the class name.

Scores are cosine similarities between the L2-normalised image embedding (``encode_image``) and the class
embeddings.

- multi-class: probabilities ``softmax(logit_scale * cos)`` (the model's clamped ``logit_scale()``), so the
  prediction is the argmax over class prompts; metrics from :mod:`tasks.metrics` on these probabilities.
- multi-label, every label scored independently against its prompt; ``auc``/``map`` rank by the label's
  score and ``acc``/``f1`` predict the label when the score is above 0. The score depends on
  ``multilabel_rule``:
  - ``val`` (default): ``cos - t_l``, with ``t_l`` the threshold on the cosine that maximises the label's
    accuracy on the val split (ties -> the highest threshold); AUC/mAP are those of the plain cosine.
  - ``negative``: ``cos(image, label prompt) - cos(image, negative prompt)``, negative prompts built from
    ``negative_prompt`` (default ``"no {}"``); this is predicting the label when
    ``sigmoid(scale * (cos_pos - cos_neg)) > 0.5``, i.e. a two-way softmax between the two prompts.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .base import Metrics, Task
from .encode import encode_texts, logit_scale, model_device
from .features import FeatureCache, image_features, model_hash_for
from .metrics import classification_metrics
from .options import check_bool, check_choice, check_int, check_str, check_str_tuple, check_templates
from .registry import TaskConfigError, register

log = logging.getLogger(__name__)

RULES = ("val", "negative")


@register("zeroshot")
class ZeroShot(Task):
    """Classify test images by similarity to class prompts (no training)."""

    @dataclass
    class Options:
        target: str
        """Downstream task name in the datasets' ``task_specs``."""
        prompt: Any = "{}"
        """A template with one ``{}`` (or a list of them, ensembled)."""
        classnames: Any = None
        """Names replacing the TaskSpec's class names in the prompts (same order and count)."""
        level: str | None = None
        """Build prompts from the train texts at this level instead of class names."""
        multilabel_rule: str = "val"
        """Multi-label thresholds: val (per-label cosine threshold tuned on val) or negative (against ``negative_prompt``)."""
        negative_prompt: Any = "no {}"
        """Template(s) of the negative prompts for ``multilabel_rule=negative``."""
        batch_size: int = 64
        """Encoding batch."""
        seed: int = 0
        """Seed of the bootstrap."""
        ci: bool = False
        """Add bootstrap 95 % intervals to the test metrics."""
        n_boot: int = 1000
        """Bootstrap resamples (with ``ci``)."""

    def validate(self) -> None:
        o, t = self.options, self.name
        o.target = check_str(t, "target", o.target)
        o.prompt = check_templates(t, "prompt", o.prompt)
        o.classnames = check_str_tuple(t, "classnames", o.classnames)
        o.level = check_str(t, "level", o.level, allow_none=True)
        o.multilabel_rule = check_choice(t, "multilabel_rule", o.multilabel_rule, RULES)
        o.negative_prompt = check_templates(t, "negative_prompt", o.negative_prompt)
        o.batch_size = check_int(t, "batch_size", o.batch_size, minimum=1)
        o.seed = check_int(t, "seed", o.seed)
        o.ci = check_bool(t, "ci", o.ci)
        o.n_boot = check_int(t, "n_boot", o.n_boot, minimum=1)

    def needed_splits(self, splits: Mapping[str, Any]) -> tuple[str, ...]:
        o = self.options
        names = ["test"]
        test = splits.get("test")
        specs = getattr(test, "task_specs", {}) if test is not None else {}
        if o.target in specs and specs[o.target].kind == "multilabel" and o.multilabel_rule == "val":
            names.append("val")
        if o.level is not None:
            names.append("train")
        return tuple(names)

    def run(self, model: Any, splits: Mapping[str, Any], cache: FeatureCache | None = None) -> Metrics:
        o = self.options
        (test,) = self.require_splits(splits, "test")
        spec = self.target_spec(test, o.target)
        kind = spec.kind
        names = list(o.classnames or spec.classes)
        if len(names) != len(spec.classes):
            raise TaskConfigError(
                self.name, "classnames", f"has {len(names)} names but {o.target!r} has {len(spec.classes)} classes",
                value=list(names), allowed=list(spec.classes),
            )
        need_val = kind == "multilabel" and o.multilabel_rule == "val"
        train = self.require_splits(splits, "train")[0] if o.level is not None else None
        val = self.require_splits(splits, "val")[0] if need_val else None
        if train is not None:
            self.check_level(train, o.level)

        device = model_device(model)
        classes = self._class_embeddings(model, names, train, spec, device)
        model_hash = model_hash_for(cache, model) if cache is not None else None

        def embed(ds: Any, split: str) -> tuple[torch.Tensor, bool]:
            res = image_features(model, ds, o.batch_size, cache, split=split, model_hash=model_hash)
            return torch.nn.functional.normalize(torch.as_tensor(res.features, device=device).float(), dim=-1), res.cached

        def cos(img: torch.Tensor, text: torch.Tensor) -> np.ndarray:
            return (img @ text.T).double().cpu().numpy()

        img, cached = embed(test, "test")
        sim = cos(img, classes)
        y = test.task_targets(o.target)
        extra: Metrics = {}
        threshold = 0.5
        if kind == "multiclass":
            scale = logit_scale(model)
            scores = torch.softmax(torch.as_tensor(sim * scale), dim=1).numpy()
            extra["logit_scale"] = scale
        elif o.multilabel_rule == "val":
            val_img, val_cached = embed(val, "val")
            cached = cached and val_cached
            t_l = best_thresholds(cos(val_img, classes), val.task_targets(o.target))
            scores, threshold = sim - t_l[None, :], 0.0
            extra["mean_threshold"] = float(np.mean(t_l))
        else:
            neg = self._embed_prompts(model, [[tpl.format(n) for tpl in o.negative_prompt] for n in names], device)
            scores, threshold = sim - cos(img, neg), 0.0
        out: Metrics = dict(
            classification_metrics(y, scores, kind, ci=o.ci, n_boot=o.n_boot, seed=o.seed, threshold=threshold)
        )
        self.record_predictions(y, scores, kind, threshold)
        out.update(extra)
        out.update(
            prompt_source=f"level:{o.level}" if o.level else "classnames",
            prompt=" | ".join(o.prompt) if o.level is None else "",
            multilabel_rule=o.multilabel_rule if kind == "multilabel" else "",
            n_test=int(len(test)),
            features_cached=int(cache is not None and cached),
        )
        return out

    # -- class embeddings -----------------------------------------------------------------------------------
    def _embed_prompts(self, model: Any, prompts: Sequence[Sequence[str]], device, weights=None) -> torch.Tensor:
        """``[C, D]``: per class, the (weighted) mean of its normalised prompt embeddings, re-normalised."""
        flat = [p for group in prompts for p in group]
        z = encode_texts(model, flat, self.options.batch_size).to(device)
        out, start = [], 0
        for c, group in enumerate(prompts):
            block = z[start : start + len(group)]
            w = torch.ones(len(group), device=device) if weights is None else torch.as_tensor(weights[c], device=device).float()
            out.append((block * w[:, None]).sum(0) / w.sum())
            start += len(group)
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)

    def _class_embeddings(self, model: Any, names: list[str], train: Any, spec: Any, device) -> torch.Tensor:
        o = self.options
        if o.level is None:
            return self._embed_prompts(model, [[tpl.format(n) for tpl in o.prompt] for n in names], device)
        prompts, weights = level_prompts(train, o.target, spec.kind, len(names), o.level)
        for c, group in enumerate(prompts):
            if not group:
                log.warning("zeroshot: no train text at level %r for class %r; using the class name", o.level, names[c])
                prompts[c], weights[c] = [o.prompt[0].format(names[c])], [1.0]
        return self._embed_prompts(model, prompts, device, weights)


def level_prompts(train: Any, target: str, kind: str, n_classes: int, level: str) -> tuple[list[list[str]], list[list[float]]]:
    """Per class, the distinct train texts at ``level`` and their counts (see the module docstring)."""
    texts = train.texts(level)
    y = train.task_targets(target)
    prompts: list[list[str]] = []
    weights: list[list[float]] = []
    for c in range(n_classes):
        if kind == "multiclass":
            members = np.flatnonzero(y == c)
        else:
            members = np.flatnonzero((y[:, c] == 1) & (y.sum(axis=1) == 1))
            if len(members) == 0:
                members = np.flatnonzero(y[:, c] == 1)
        counts = Counter(texts[i] for i in members if texts[i] is not None)
        prompts.append(sorted(counts))
        weights.append([float(counts[t]) for t in sorted(counts)])
    return prompts, weights


def best_thresholds(sim: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per label, the threshold ``t`` maximising the accuracy of ``sim > t`` (ties -> the highest ``t``).

    Thresholds are midpoints between consecutive distinct values (or 1 above the max / below the min).
    """
    n, k = sim.shape
    out = np.empty(k)
    for j in range(k):
        s = sim[:, j]
        order = np.argsort(-s, kind="mergesort")
        ss, yy = s[order], y[order, j].astype(np.int64)
        # cut after position m (predict the top m positive); only between distinct values
        cuts = np.r_[0, np.flatnonzero(np.diff(ss)) + 1, n]
        tp = np.r_[0, np.cumsum(yy)][cuts]
        fp = cuts - tp
        acc = (tp + (n - yy.sum() - fp)) / n
        m = cuts[int(np.argmax(acc))]  # first maximum = fewest positives = highest threshold
        if m == 0:
            out[j] = ss[0] + 1.0
        elif m == n:
            out[j] = ss[-1] - 1.0
        else:
            out[j] = 0.5 * (ss[m - 1] + ss[m])
    return out
