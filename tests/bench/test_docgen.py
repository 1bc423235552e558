"""The reference tables in the README and the docs are the ones generated from the code."""

from bench import docgen


def test_generated_blocks_are_current():
    assert docgen.stale() == [], "run: python -m bench.docgen --write"


def test_every_schema_key_is_in_the_generated_table():
    from bench.config import DEFAULTS

    table = docgen.generate("keys")
    for section in ("train", "model", "eval"):
        for key in DEFAULTS[section]:
            assert f"`{section}.{key}`" in table


def test_every_registry_entry_is_documented():
    import objectives
    import tasks
    from bench.data import FORMATS
    from bench.models import IMAGE_TOWERS, TEXT_TOWERS

    for topic, names in (("data", FORMATS), ("image", IMAGE_TOWERS), ("text", TEXT_TOWERS),
                         ("objectives", {n for n, c in objectives.OBJECTIVES.items() if c.name == n}),
                         ("tasks", tasks.TASKS)):
        text = docgen.generate(topic)
        assert all(f"#### `{n}`" in text for n in names), topic
