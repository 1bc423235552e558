"""YAML as the harness reads it: the YAML 1.2 core schema for scalars.

PyYAML implements YAML 1.1, where ``yes``, ``no``, ``on`` and ``off`` are booleans and ``1e-3`` is a string.
The harness has one boolean rule (``true``/``false`` only, see :mod:`bench.options`), so grid files, suites,
SLURM profiles and command-line values are read with this loader: booleans are ``true``/``false`` (any
case), and ``1e-3`` is a number as in YAML 1.2; ``yes`` stays the string ``"yes"`` and is then refused by the
option it was given to, naming it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["Loader", "load", "parse_value"]


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 core-schema booleans, integers (decimal: ``010`` is 10) and floats;
dates stay strings."""


_REPLACED = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float", "tag:yaml.org,2002:int", "tag:yaml.org,2002:timestamp")
Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
Loader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: int(loader.construct_scalar(node), 10))
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load(text: str) -> Any:
    """Parse a YAML document with :class:`Loader`."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def parse_value(text: str) -> Any:
    """A command-line value (``key=VALUE``) as YAML: ``3`` -> 3, ``[a,b]`` -> list, ``abc`` -> "abc"."""
    if text == "":
        return ""
    try:
        return load(text)
    except yaml.YAMLError:
        return text
