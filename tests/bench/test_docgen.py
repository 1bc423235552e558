"""The reference tables in the docs are the ones generated from the code, and every registry entry has one."""

import re

import pytest

from bench import docgen


def _all_blocks() -> dict[str, list[str]]:
    """topic -> the documents (relative paths) holding a block of it."""
    out: dict[str, list[str]] = {}
    for p in docgen.documents():
        if p.is_file():
            for topic in docgen.blocks(p.read_text()):
                out.setdefault(topic, []).append(p.relative_to(docgen.ROOT).as_posix())
    return out


def test_generated_blocks_are_current():
    assert docgen.stale() == [], "run: python -m bench.docgen --write"


def test_a_stale_block_is_found_and_refreshed(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    current = docgen.refresh("intro\n\n<!-- generated: objective:mgll -->\n<!-- end generated -->\n\nafter\n")
    assert "`objective.terms`" in current and current.endswith("after\n")
    page.write_text(current)
    assert docgen.stale([page]) == []
    # a default changed in the code but not in the doc: the check fails, --write repairs it
    page.write_text(current.replace("`[0.5, 1.0, 1.0]`", "`[0.5, 1.0, 2.0]`"))
    assert docgen.stale([page]) == [page]
    monkeypatch.setattr(docgen, "documents", lambda: [page])
    assert docgen.main(["--check"]) == 1
    assert docgen.main(["--write"]) == 0
    assert page.read_text() == current
    assert docgen.main(["--check"]) == 0


def test_unknown_topics_are_errors():
    with pytest.raises(ValueError, match="unknown generated topic"):
        docgen.generate("nonsense")
    with pytest.raises(ValueError, match="no objective named 'clipp'"):
        docgen.generate("objective:clipp")
    with pytest.raises(ValueError, match="unknown registry"):
        docgen.generate("tower:vit")


def test_every_schema_key_is_in_the_configuration_page():
    from bench.config import DEFAULTS
    from bench.schema import rows

    assert "docs/configuration.md" in _all_blocks()["keys"]
    table = docgen.generate("keys")
    for d in rows():
        assert f"| `{d.key}` |" in table
    for section in ("train", "model", "eval"):
        for key in DEFAULTS[section]:
            assert f"`{section}.{key}`" in table


def test_every_registry_entry_has_its_options_in_the_docs():
    import objectives
    import tasks
    from bench.data import FORMATS
    from bench.launch import LAUNCHERS
    from bench.models import IMAGE_TOWERS, TEXT_TOWERS

    blocks = _all_blocks()
    registries = {
        "data": FORMATS, "image": IMAGE_TOWERS, "text": TEXT_TOWERS, "task": tasks.TASKS, "launcher": LAUNCHERS,
        "objective": {n for n, c in objectives.OBJECTIVES.items() if c.name == n},
    }
    plural = {"data": "data", "image": "image", "text": "text", "task": "tasks", "launcher": "launchers",
              "objective": "objectives"}
    missing = [f"{kind}:{name}" for kind, names in registries.items() for name in names
               if f"{kind}:{name}" not in blocks and plural[kind] not in blocks]
    assert missing == [], "add a <!-- generated: KIND:NAME --> block to the page that documents each"
    # each objective has its own page, holding its options
    for name in registries["objective"]:
        assert blocks.get(f"objective:{name}") == [f"docs/objectives/{name}.md"], name
    assert blocks["objective-registry"] == ["docs/objectives/index.md"]


def test_generated_tables_document_every_option():
    """Every option of every registered entry has a meaning in the generated tables (help text or docstring)."""
    undocumented = []
    for kind in docgen.REGISTRIES:
        for name, (_, docs) in docgen._entries(kind).items():
            undocumented += [f"{kind}:{name} {d.key}" for d in docs if not d.help.strip()]
    assert undocumented == []


def test_the_objective_registry_links_every_objective():
    import objectives

    table = docgen.generate("objective-registry")
    names = {n for n, c in objectives.OBJECTIVES.items() if c.name == n}
    assert set(re.findall(r"\[`(\w+)`\]\((\w+)\.md\)", table)) == {(n, n) for n in names}
    assert "`flair`, `unicl`" in table
