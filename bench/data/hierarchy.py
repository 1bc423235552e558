"""A small YAML label hierarchy: fine labels (the table's own) mapped to coarser levels, plus templates.

Schema (every key but ``levels`` optional)::

    levels: [category, disease]        # coarse to fine; the last level holds the table's own labels
    category:                          # each coarser level: coarse label -> the fine labels it covers
      Abnormal: [Cardiomegaly, Effusion]
      Normal: [No Finding]
    disease: [Cardiomegaly, Effusion, No Finding]   # the fine vocabulary (its order = text order)
    templates:                         # per level; {labels} = the level's labels joined with ", "
      category: "A {labels} chest X-ray."
      disease: "Findings: {labels}."

A coarse level's labels for a sample are the coarse labels covering at least one of its fine labels (a
fine label may sit under several). Vocabulary order: a level's keys (coarse) or list (fine) in file order;
without a fine list, the fine labels in order of first appearance in the mappings. A fine label is
*known* if it is in the fine list, or (no fine list) in some mapping; with a single level and no fine list
every label is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from .registry import DataConfigError
from .templates import check_templates


@dataclass
class Hierarchy:
    levels: tuple[str, ...]
    mapping: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)  # coarse level -> label -> fine
    fine_vocab: tuple[str, ...] | None = None
    templates: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    @property
    def fine(self) -> str:
        return self.levels[-1]

    def known_fine(self) -> tuple[str, ...] | None:
        """The fine labels the hierarchy knows, in vocabulary order, or ``None`` when any label is allowed."""
        if self.fine_vocab is not None:
            return self.fine_vocab
        if not self.mapping:
            return None
        seen: dict[str, None] = {}
        for level in self.levels[:-1]:
            for fines in self.mapping[level].values():
                for f in fines:
                    seen.setdefault(f, None)
        return tuple(seen)

    def is_known(self, fine_label: str) -> bool:
        known = self.known_fine()
        return known is None or fine_label in known

    def coarse_vocab(self, level: str) -> tuple[str, ...]:
        return tuple(self.mapping[level])

    def expand(self, fine_labels: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Labels per level (in each level's vocabulary order) for a sample's fine labels (already ordered)."""
        fine_set = set(fine_labels)
        out = {self.fine: tuple(fine_labels)}
        for level in self.levels[:-1]:
            out[level] = tuple(c for c, fines in self.mapping[level].items() if fine_set.intersection(fines))
        return out


def flat(level: str) -> Hierarchy:
    """No hierarchy file: one level holding the table's labels."""
    return Hierarchy(levels=(level,))


def load_hierarchy(path: str | Path) -> Hierarchy:
    p = Path(str(path)).expanduser()
    where = f"data.hierarchy={str(path)!r}"
    if not p.is_file():
        raise DataConfigError(f"{where}: no such file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise DataConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(raw, dict) or "levels" not in raw:
        raise DataConfigError(f"{p}: a hierarchy file is a mapping with a 'levels' list (coarse to fine)")
    levels = raw["levels"]
    if not isinstance(levels, list) or not levels or not all(isinstance(g, str) for g in levels):
        raise DataConfigError(f"{p} [levels]: must be a non-empty list of level names, got {levels!r}")
    if len(set(levels)) != len(levels):
        raise DataConfigError(f"{p} [levels]: repeated level names in {levels}")
    unknown = sorted(set(raw) - {"levels", "templates", *levels})
    if unknown:
        raise DataConfigError(f"{p}: unknown key(s) {unknown}; allowed: levels, templates, and the levels {levels}")
    mapping: dict[str, dict[str, tuple[str, ...]]] = {}
    for level in levels[:-1]:
        node = raw.get(level)
        if not isinstance(node, dict) or not node:
            raise DataConfigError(
                f"{p} [{level}]: a coarse level needs a mapping {{coarse label: [fine labels]}}, got {node!r}"
            )
        mapping[level] = {}
        for coarse, fines in node.items():
            if isinstance(fines, str):
                fines = [fines]
            if not isinstance(fines, list) or not all(isinstance(f, (str, int)) for f in fines):
                raise DataConfigError(f"{p} [{level}.{coarse}]: must be a list of fine label names, got {fines!r}")
            mapping[level][str(coarse)] = tuple(str(f) for f in fines)
    fine_vocab = None
    if levels[-1] in raw:
        node = raw[levels[-1]]
        if not isinstance(node, list) or not all(isinstance(f, (str, int)) for f in node):
            raise DataConfigError(f"{p} [{levels[-1]}]: the fine level is a list of label names, got {node!r}")
        fine_vocab = tuple(str(f) for f in node)
        for level, m in mapping.items():
            for coarse, fines in m.items():
                stray = [f for f in fines if f not in fine_vocab]
                if stray:
                    raise DataConfigError(
                        f"{p} [{level}.{coarse}]: fine label(s) {stray} are not in the fine list [{levels[-1]}]"
                    )
    templates = check_templates(raw.get("templates"), levels, f"{p} [templates]")
    return Hierarchy(tuple(levels), mapping, fine_vocab, templates, str(p))
