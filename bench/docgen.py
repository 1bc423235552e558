"""Reference tables generated from the code: the run-config keys (:mod:`bench.schema`), the objective
registry, and the options of every data format, tower, objective, task and launcher (their options
dataclasses or option tables).

The docs embed them between markers::

    <!-- generated: keys -->
    ...the table...
    <!-- end generated -->

``python -m bench.docgen --write`` refreshes every marked block of README.md and docs/**/*.md; ``--check``
exits 1 when a block is stale (a test runs it); ``--print TOPIC`` prints one block. Topics:

- ``keys``: every run-config key with its default and meaning (docs/configuration.md);
- ``objective-registry``: one line per objective: name, aliases, formula, link to its page
  (docs/objectives/index.md, so the links are relative to docs/objectives/);
- ``data``, ``image``, ``text``, ``objectives``, ``tasks``, ``launchers``: a heading and an options table per
  registry entry;
- ``data:NAME``, ``image:NAME``, ``text:NAME``, ``objective:NAME``, ``task:NAME``, ``launcher:NAME``: the
  options table of one entry (the page that documents it).

An option's meaning is its ``help`` metadata or, for the tasks' options, the attribute docstring under the
field.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterable

from .options import OptionDoc, describe

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- generated: ([\w:-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)
REGISTRIES = ("data", "image", "text", "objective", "task", "launcher")


def _cell(v: Any) -> str:
    if v is None:
        return "`null`"
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, str) and v == "(required)":
        return "required"
    if isinstance(v, str) and v == "":
        return '`""`'
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list) and len(v) > 4 and all(isinstance(x, float) for x in v):
        v = "[" + ", ".join(f"{x:.3g}" for x in v) + "]"
    return f"`{v}`".replace("|", "\\|")


def _text(s: str) -> str:
    return " ".join(s.split()).replace("``", "`").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _table(docs: Iterable[OptionDoc]) -> str:
    docs = list(docs)
    if not docs:
        return "No options."
    lines = ["| option | default | meaning |", "| --- | --- | --- |"]
    for d in docs:
        lines.append(f"| `{d.key}` | {_cell(d.default)} | {_text(d.help)} |")
    return "\n".join(lines)


def _summary(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring on one line."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _attribute_docs(cls: type) -> dict[str, str]:
    """``field name -> the string literal under it`` in the class body (attribute docstrings)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out = {}
    for a, b in zip(body, body[1:]):
        if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)):
            out[a.target.id] = " ".join(b.value.value.split())
    return out


def _options(cls: Any, prefix: str) -> list[OptionDoc]:
    if cls is None or not dataclasses.is_dataclass(cls):
        return []
    attr = _attribute_docs(cls)
    return [d if d.help else dataclasses.replace(d, help=attr.get(d.key[len(prefix):], ""))
            for d in describe(cls, prefix=prefix)]


def _entries(kind: str) -> dict[str, tuple[str, list[OptionDoc]]]:
    """``name -> (summary, options)`` of every entry of one registry."""
    if kind == "data":
        from .data import FORMATS

        return {n: (_summary(f.build), _options(f.options, "data.")) for n, f in FORMATS.items()}
    if kind in ("image", "text"):
        from .models import IMAGE_TOWERS, TEXT_TOWERS

        table = IMAGE_TOWERS if kind == "image" else TEXT_TOWERS
        return {n: (_summary(fn), _options(getattr(fn, "options", None), f"{kind}.")) for n, fn in table.items()}
    if kind == "objective":
        import objectives

        return {n: (_summary(c), _options(getattr(c, "Options", None), "objective."))
                for n, c in objectives.OBJECTIVES.items() if c.name == n}
    if kind == "task":
        import tasks

        return {n: (_summary(c), _options(getattr(c, "Options", None), "")) for n, c in tasks.TASKS.items()}
    if kind == "launcher":
        from .launch import LAUNCHERS

        return {n: (l.summary, [OptionDoc(f"launcher.{k}", "", o.default, o.help) for k, o in l.options.items()])
                for n, l in LAUNCHERS.items()}
    raise ValueError(f"unknown registry {kind!r}; known: {list(REGISTRIES)}")


def _sections(kind: str) -> str:
    entries = _entries(kind)
    return "\n\n".join(f"### `{n}`\n\n{_text(entries[n][0])}\n\n{_table(entries[n][1])}" for n in sorted(entries))


def _objective_registry() -> str:
    import objectives

    aliases: dict[str, list[str]] = {}
    for n, c in objectives.OBJECTIVES.items():
        if c.name != n:
            aliases.setdefault(c.name, []).append(n)
    lines = ["| objective | aliases | formula and outputs | class |", "| --- | --- | --- | --- |"]
    for n in sorted(n for n, c in objectives.OBJECTIVES.items() if c.name == n):
        c = objectives.OBJECTIVES[n]
        summary = _summary(c).replace("``", "`")
        alias = ", ".join(f"`{a}`" for a in sorted(aliases.get(n, []))) or "none"
        lines.append(f"| [`{n}`]({n}.md) | {alias} | {summary.replace('|', chr(92) + '|')} | `{c.__module__}.{c.__name__}` |")
    return "\n".join(lines)


def generate(topic: str) -> str:
    """The markdown of one generated block."""
    if topic == "keys":
        from .schema import markdown_table

        return markdown_table()
    if topic == "objective-registry":
        return _objective_registry()
    if ":" in topic:
        kind, name = topic.split(":", 1)
        entries = _entries(kind)
        if name not in entries:
            raise ValueError(f"generated block {topic!r}: no {kind} named {name!r}; known: {sorted(entries)}")
        return _table(entries[name][1])
    plural = {"objectives": "objective", "tasks": "task", "launchers": "launcher"}
    if topic in plural or topic in ("data", "image", "text"):
        return _sections(plural.get(topic, topic))
    raise ValueError(f"unknown generated topic {topic!r}")


def documents() -> list[Path]:
    docs = ROOT / "docs"
    return [ROOT / "README.md", *(sorted(docs.rglob("*.md")) if docs.is_dir() else [])]


def blocks(text: str) -> list[str]:
    """The topics of the generated blocks in ``text``, in order."""
    return [m.group(2) for m in BLOCK.finditer(text)]


def refresh(text: str) -> str:
    """``text`` with every generated block replaced by its current content."""
    return BLOCK.sub(lambda m: f"{m.group(1)}{generate(m.group(2))}\n{m.group(4)}", text)


def stale(paths: Iterable[Path] | None = None) -> list[Path]:
    """The documents (default: README.md and docs/**/*.md) with a generated block that is not current."""
    paths = documents() if paths is None else list(paths)
    return [p for p in paths if p.is_file() and refresh(p.read_text()) != p.read_text()]


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
