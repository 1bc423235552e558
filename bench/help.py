"""``python -m bench.run --help [TOPIC]``: the keys of the run config and the options of every builder,
generated from the code (the schema and the options dataclasses of the registries).

Topics: ``keys`` (default: every run-config key), ``data`` (the formats), ``image`` and ``text`` (the
towers), ``objective``, ``tasks``, ``launcher``, ``grids``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .errors import ConfigError, did_you_mean
from .options import OptionDoc, describe

TOPICS = ("keys", "data", "image", "text", "objective", "tasks", "launcher", "grids")


def _fmt(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _block(title: str, docs: list[OptionDoc], summary: str = "") -> str:
    lines = [f"{title}" + (f": {summary}" if summary else "")]
    if not docs:
        lines.append("    (no options)")
    width = max((len(d.key) for d in docs), default=0)
    for d in docs:
        lines.append(f"    {d.key.ljust(width)}  {d.help} [{_fmt(d.default)}]")
    return "\n".join(lines)


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.split("\n")[0].rstrip(".") if doc else ""


def _registry_help(section: str, table: dict[str, Any], options_of: Callable[[Any], type | None]) -> str:
    out = []
    for name in sorted(table):
        entry = table[name]
        cls = options_of(entry)
        docs = describe(cls, prefix=f"{section}.") if cls is not None and dataclasses.is_dataclass(cls) else []
        out.append(_block(f"{section} {name}", docs, _first_line(getattr(entry, "build", entry))))
    return "\n\n".join(out)


def topic_help(topic: str) -> str:
    """The help text of ``topic`` (raises :class:`ConfigError` for an unknown one)."""
    if topic == "keys":
        from .schema import help_text

        return "Run-config keys (python -m bench.run KEY=VALUE ...), default in brackets:\n" + help_text()
    if topic == "data":
        from .data import FORMATS

        return ("Data formats (data.format=NAME) and their options; every format also takes the shared "
                "data.* keys (python -m bench.run --help keys)\n\n"
                + _registry_help("data", FORMATS, lambda f: f.options))
    if topic in ("image", "text"):
        from .models import IMAGE_TOWERS, TEXT_TOWERS

        table = IMAGE_TOWERS if topic == "image" else TEXT_TOWERS
        common = "freeze, grad_checkpointing, mean, std" if topic == "image" else "freeze, grad_checkpointing, context_length"
        extra = " (or any timm model name)" if topic == "image" else ""
        return (f"{topic.capitalize()} towers ({topic}.name=NAME{extra}) and their options; every tower also takes "
                f"{common}\n\n" + _registry_help(topic, table, lambda fn: getattr(fn, "options", None)))
    if topic == "objective":
        import objectives

        table = {name: cls for name, cls in objectives.OBJECTIVES.items() if cls.name == name}
        return ("Objectives (objective.name=NAME) and their options\n\n"
                + _registry_help("objective", table, lambda cls: getattr(cls, "Options", None)))
    if topic == "tasks":
        import tasks

        return ("Tasks (tasks: [TASK/TARGET, {name: TASK, target: ..., option: value}]) and their options\n\n"
                + _registry_help("tasks[i]", tasks.TASKS, lambda cls: getattr(cls, "Options", None)))
    if topic == "launcher":
        from .launch import LAUNCHERS

        out = []
        for name, launcher in LAUNCHERS.items():
            docs = [OptionDoc(f"launcher.{k}", "", o.default, o.help) for k, o in launcher.options.items()]
            out.append(_block(f"launcher {name}", docs, launcher.summary))
        return "Launchers (launcher.name=NAME, or launcher=NAME) and their options\n\n" + "\n\n".join(out)
    if topic == "grids":
        import yaml

        from .config import GRIDS_DIR

        lines = ["Packaged grids (grid=NAME; or grid=path/to/grid.yaml)"]
        for p in sorted(GRIDS_DIR.glob("*.yaml")):
            desc = (yaml.safe_load(p.read_text()) or {}).get("description", "")
            lines.append(f"    {p.stem.ljust(12)}  {desc}")
        return "\n".join(lines)
    raise ConfigError(f"--help {topic!r} is not a help topic{did_you_mean(topic, TOPICS)}", allowed=TOPICS)
