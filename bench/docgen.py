"""Reference tables generated from the code: the run-config keys (:mod:`bench.schema`) and the options of
every data format, tower, objective, task and launcher (their options dataclasses).

The docs embed them between markers::

    <!-- generated: keys -->
    ...the table...
    <!-- end generated -->

``python -m bench.docgen --write`` refreshes every marked block of README.md and docs/**/*.md; ``--check``
exits 1 when a block is stale (a test runs it). Topics: ``keys``, ``data``, ``image``, ``text``,
``objectives``, ``tasks``, ``launchers``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any, Iterable

from .options import OptionDoc, describe

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _cell(v: Any) -> str:
    if v is None:
        return "`null`"
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, str) and v == "(required)":
        return "required"
    if isinstance(v, tuple):
        v = list(v)
    return f"`{v}`".replace("|", "\\|")


def _table(docs: Iterable[OptionDoc]) -> str:
    lines = ["| option | default | meaning |", "| --- | --- | --- |"]
    for d in docs:
        lines.append(f"| `{d.key}` | {_cell(d.default)} | {d.help.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ").strip() if doc else ""


def _registry(title: str, prefix: str, entries: dict[str, Any], options_of) -> str:
    parts = []
    for name in sorted(entries):
        entry = entries[name]
        cls = options_of(entry)
        docs = describe(cls, prefix=prefix) if cls is not None and dataclasses.is_dataclass(cls) else []
        summary = _first_line(getattr(entry, "build", entry))
        parts.append(f"#### `{name}`\n\n{summary}\n\n" + (_table(docs) if docs else "No options."))
    return "\n\n".join(parts)


def generate(topic: str) -> str:
    """The markdown of one generated block."""
    if topic == "keys":
        from .schema import markdown_table

        return markdown_table()
    if topic == "data":
        from .data import FORMATS

        return _registry("data", "data.", FORMATS, lambda f: f.options)
    if topic in ("image", "text"):
        from .models import IMAGE_TOWERS, TEXT_TOWERS

        return _registry(topic, f"{topic}.", IMAGE_TOWERS if topic == "image" else TEXT_TOWERS,
                         lambda fn: getattr(fn, "options", None))
    if topic == "objectives":
        import objectives

        table = {n: c for n, c in objectives.OBJECTIVES.items() if c.name == n}
        return _registry("objectives", "objective.", table, lambda c: getattr(c, "Options", None))
    if topic == "tasks":
        import tasks

        return _registry("tasks", "", tasks.TASKS, lambda c: getattr(c, "Options", None))
    if topic == "launchers":
        from .launch import LAUNCHERS

        parts = []
        for name, launcher in LAUNCHERS.items():
            docs = [OptionDoc(f"launcher.{k}", "", o.default, o.help) for k, o in launcher.options.items()]
            parts.append(f"#### `{name}`\n\n{launcher.summary}\n\n" + _table(docs))
        return "\n\n".join(parts)
    raise ValueError(f"unknown generated topic {topic!r}")


def documents() -> list[Path]:
    docs = ROOT / "docs"
    return [ROOT / "README.md", *(sorted(docs.rglob("*.md")) if docs.is_dir() else [])]


def refresh(text: str) -> str:
    """``text`` with every generated block replaced by its current content."""
    return BLOCK.sub(lambda m: f"{m.group(1)}{generate(m.group(2))}\n{m.group(4)}", text)


def stale() -> list[Path]:
    return [p for p in documents() if p.is_file() and refresh(p.read_text()) != p.read_text()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.docgen", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="refresh every generated block of README.md and docs/")
    g.add_argument("--check", action="store_true", help="exit 1 if a generated block is stale")
    g.add_argument("--print", metavar="TOPIC", help="print one generated block")
    args = ap.parse_args(argv)
    if args.print:
        print(generate(args.print))
        return 0
    if args.check:
        bad = stale()
        for p in bad:
            print(f"stale generated block in {p} (run: python -m bench.docgen --write)", file=sys.stderr)
        return 1 if bad else 0
    for p in documents():
        if p.is_file():
            new = refresh(p.read_text())
            if new != p.read_text():
                p.write_text(new)
                print(f"refreshed {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
