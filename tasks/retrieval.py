"""Image-text retrieval Recall@K on the test split, at one text granularity.

At level ``L`` (option ``level``, or its alias ``target`` for the runner's ``retrieval/<level>`` form;
default: the dataset's last, finest level), samples whose text at ``L`` is missing are
left out. Identical strings are the same text: the candidate texts are the *unique* strings, an image's
positives are the unique strings equal to its own text, and a text query's positives are all the images
having that text (``dedupe_texts=false`` instead ranks one text per sample, duplicates included, so an image
can have several positive text entries).

Recall@K = the fraction of queries with at least one positive among the top K candidates, with the rank of a
query's best positive = 1 + the number of *negative* candidates scoring >= it (ties count against the
query, so a collapsed model with identical embeddings does not score perfectly). Scores are cosine
similarities of the L2-normalised embeddings. ``i2t``: queries = images, candidates = texts;
``t2i``: queries = texts, candidates = images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .base import Metrics, Task
from .encode import encode_texts, model_device
from .features import FeatureCache, image_features
from .options import check_bool, check_int, check_int_tuple, check_str
from .registry import TaskConfigError, register

log = logging.getLogger(__name__)

RECALL_DEFINITION = (
    "recall@k = fraction of queries with at least one positive among the top-k candidates by cosine similarity; "
    "rank of a query = 1 + number of negative candidates scoring >= its best positive (ties count against the query); "
    "i2t: queries = test images with a text at the level, candidates = the unique text strings at the level, "
    "positive = the image's own string; t2i: queries = the unique strings, candidates = those images, "
    "positives = every image with that string"
)
RECALL_DEFINITION_ALL = (
    "recall@k = fraction of queries with at least one positive among the top-k candidates by cosine similarity; "
    "rank of a query = 1 + number of negative candidates scoring >= its best positive (ties count against the query); "
    "one text per sample (duplicates kept): i2t: queries = test images with a text at the level, candidates = "
    "their texts, positives = the texts equal to the image's own; t2i: queries = those texts, candidates = the "
    "images, positives = every image with an equal text"
)


@register("retrieval")
class Retrieval(Task):
    """Image-to-text and text-to-image Recall@K at one granularity of the test split."""

    needs_target = False

    @dataclass
    class Options:
        level: str | None = None
        """Text granularity (default: the dataset's last level)."""
        target: str | None = None
        """Alias of ``level``, so that the runner's ``retrieval/<level>`` form works."""
        ks: tuple[int, ...] = field(default_factory=lambda: (1, 5, 10))
        """The K of Recall@K."""
        dedupe_texts: bool = True
        """Rank unique strings (false: one text per sample, duplicates included)."""
        batch_size: int = 64
        """Encoding batch."""
        query_chunk: int = 1024
        """Queries scored per chunk."""

    def validate(self) -> None:
        o, t = self.options, self.name
        o.level = check_str(t, "level", o.level, allow_none=True)
        o.target = check_str(t, "target", o.target, allow_none=True)
        if o.target is not None:
            if o.level is not None and o.level != o.target:
                raise TaskConfigError(t, "target", f"is an alias of level and disagrees with level={o.level!r}", value=o.target)
            o.level, o.target = o.target, None
        o.ks = check_int_tuple(t, "ks", o.ks, minimum=1)
        o.dedupe_texts = check_bool(t, "dedupe_texts", o.dedupe_texts)
        o.batch_size = check_int(t, "batch_size", o.batch_size, minimum=1)
        o.query_chunk = check_int(t, "query_chunk", o.query_chunk, minimum=1)

    def needed_splits(self, splits: Mapping[str, Any]) -> tuple[str, ...]:
        return ("test",)

    def run(self, model: Any, splits: Mapping[str, Any], cache: FeatureCache | None = None) -> Metrics:
        o = self.options
        (test,) = self.require_splits(splits, "test")
        level = o.level or test.levels[-1]
        self.check_level(test, level)
        texts = test.texts(level)
        keep = np.array([i for i, t in enumerate(texts) if t is not None], dtype=np.int64)
        if len(keep) == 0:
            raise ValueError(f"task {self.name!r}: no test sample has a text at level {level!r}")
        unique: dict[str, int] = {}
        ids = np.array([unique.setdefault(texts[i], len(unique)) for i in keep], dtype=np.int64)
        strings = list(unique)

        device = model_device(model)
        res = image_features(model, test, o.batch_size, cache, split="test")
        img = F.normalize(torch.as_tensor(res.features[keep], device=device).float(), dim=-1)
        txt = encode_texts(model, strings, o.batch_size).to(device)
        txt_ids = torch.arange(len(strings), device=device)
        img_ids = torch.as_tensor(ids, device=device)
        if not o.dedupe_texts:
            txt, txt_ids = txt[img_ids], img_ids  # one entry per sample, identical strings share an embedding
        i2t = recall_at_k(img, img_ids, txt, txt_ids, o.ks, o.query_chunk)
        t2i = recall_at_k(txt, txt_ids, img, img_ids, o.ks, o.query_chunk)

        out: Metrics = {}
        for k in o.ks:
            out[f"i2t_recall@{k}"] = i2t[k]
        for k in o.ks:
            out[f"t2i_recall@{k}"] = t2i[k]
        out.update(
            recall_definition=RECALL_DEFINITION if o.dedupe_texts else RECALL_DEFINITION_ALL,
            level=level,
            n_images=int(len(keep)),
            n_texts=int(len(txt_ids)),
            n_unique_texts=int(len(strings)),
            n_missing_text=int(len(texts) - len(keep)),
            features_cached=int(cache is not None and res.cached),
        )
        return out


def query_ranks(
    queries: torch.Tensor, query_ids: torch.Tensor, cands: torch.Tensor, cand_ids: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """int64 ``[Q]``: 1 + the number of negative candidates scoring >= the query's best positive
    (``len(cands) + 1`` when a query has no positive at all).

    A candidate is a positive of a query when their ids are equal; scores are dot products (pass normalised
    embeddings for cosine similarity). Computed ``chunk`` queries at a time.
    """
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        s = q @ cands.T
        pos = query_ids[start : start + chunk, None] == cand_ids[None, :]
        best = torch.where(pos, s, torch.full_like(s, -torch.inf)).max(dim=1).values
        worse = ((s >= best[:, None]) & ~pos).sum(dim=1)
        out.append(torch.where(pos.any(dim=1), 1 + worse, torch.full_like(worse, len(cands) + 1)))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def recall_at_k(
    queries: torch.Tensor,
    query_ids: torch.Tensor,
    cands: torch.Tensor,
    cand_ids: torch.Tensor,
    ks: tuple[int, ...],
    chunk: int = 1024,
) -> dict[int, float]:
    """``{k: fraction of queries whose rank (see :func:`query_ranks`) is <= k}``."""
    ranks = query_ranks(queries, query_ids, cands, cand_ids, chunk).cpu()
    return {k: float((ranks <= k).double().mean()) for k in ks}
