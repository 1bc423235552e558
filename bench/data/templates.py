"""Text templates: a level's label set -> one text, ``template.format(labels=", ".join(labels))``.

A template may use only the ``{labels}`` placeholder (write ``{{``/``}}`` for literal braces). Labels are
joined with ``", "`` in the level's vocabulary order.
"""

from __future__ import annotations

import string
from typing import Any, Sequence

from .registry import DataConfigError

DEFAULT_TEMPLATE = "{labels}"


def check_template(template: Any, where: str) -> str:
    """``template`` if it is a string whose only placeholder is ``{labels}``; else a DataConfigError naming
    ``where`` (the option or file key)."""
    if not isinstance(template, str):
        raise DataConfigError(f"{where}: a template must be a string with a {{labels}} placeholder, got {template!r}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise DataConfigError(f"{where}: template {template!r} is not a valid format string: {e}") from e
    bad = [f for f in fields if f != "labels"]
    if bad:
        raise DataConfigError(
            f"{where}: template {template!r} uses placeholder(s) {bad}; the only one allowed is {{labels}}"
        )
    return template


def render(template: str, labels: Sequence[str]) -> str:
    return template.format(labels=", ".join(labels))


def check_templates(templates: Any, levels: Sequence[str], where: str) -> dict[str, str]:
    """A ``{level: template}`` mapping; unknown levels are an error naming the known ones."""
    if templates is None:
        return {}
    if not isinstance(templates, dict):
        raise DataConfigError(f"{where} must be a mapping {{level: template}}, got {templates!r}")
    unknown = [g for g in templates if g not in levels]
    if unknown:
        raise DataConfigError(f"{where}: template(s) for unknown level(s) {unknown}; the levels are {list(levels)}")
    return {g: check_template(t, f"{where}.{g}") for g, t in templates.items()}
