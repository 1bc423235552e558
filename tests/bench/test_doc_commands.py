"""Every ``python -m bench...`` command shown in the README and the docs runs.

Commands are taken from fenced code blocks (a trailing backslash continues a line; ``# comments`` are
dropped). Where a command would train, it runs in dry-run mode:

- ``bench.run``: with ``dry_run=true`` and a throwaway ``results_dir`` (expansion, every config check, the
  launcher's options) -- exit status 0 expected; ``--help`` commands as they are;
- ``bench.report`` / ``bench.status``: against a synthetic finished grid of the name the command uses;
- any other module (benchmarks, the generator's CLI): its ``--help`` after the arguments shown, so the
  subcommand and every option shown must exist.

Files a doc shows (a YAML block whose first line is ``# name.yaml``) are written to the working folder first,
so ``grid=my_grid.yaml`` examples run against the file the doc shows.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))] if (ROOT / "docs").is_dir() else [ROOT / "README.md"]
FENCE = re.compile(r"^```(\w*)\s*$")


def _blocks(path: Path) -> list[tuple[str, list[str]]]:
    out, lang, lines, inside = [], "", [], False
    for line in path.read_text().splitlines():
        m = FENCE.match(line.strip())
        if m and not inside:
            inside, lang, lines = True, m.group(1), []
        elif line.strip() == "```" and inside:
            out.append((lang, lines))
            inside = False
        elif inside:
            lines.append(line)
    return out


def _commands(path: Path) -> list[str]:
    cmds = []
    for lang, lines in _blocks(path):
        if lang not in ("", "bash", "sh", "console", "shell"):
            continue
        joined, buf = [], ""
        for line in lines:
            if line.rstrip().endswith("\\"):
                buf += line.rstrip()[:-1] + " "
                continue
            joined.append(buf + line)
            buf = ""
        for line in joined:
            for part in re.split(r"&&|;", line):
                part = part.strip().removeprefix("$ ").strip()
                if part.startswith("python -m bench"):
                    cmds.append(part)
    return cmds


def _shown_files(path: Path) -> dict[str, str]:
    files = {}
    for lang, lines in _blocks(path):
        if lang in ("yaml", "yml") and lines and re.match(r"^#\s*([\w./-]+\.ya?ml)\s*(--.*)?$", lines[0].strip()):
            name = re.match(r"^#\s*([\w./-]+\.ya?ml)", lines[0].strip()).group(1)
            files[Path(name).name] = "\n".join(lines) + "\n"
    return files


COMMANDS = sorted({(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in _commands(p)})


def _synthetic_grid(root: Path, name: str) -> None:
    """A finished two-row grid (CLIP, MGLL; two seeds) in ``root/name``: the pretraining corpus's linear probe
    and a two-dataset suite (LP and FT, AUC/ACC/mAP, test-set sizes), so every table of the report has data."""
    for label, obj, auc in (("CLIP", {"name": "clip", "level": "disease"}, 0.7), ("MGLL", {"name": "mgll"}, 0.8)):
        for seed in (0, 1):
            d = root / name / f"{label.lower()}00000{seed}"
            d.mkdir(parents=True)
            cfg = {"grid": name, "label": label, "seed": seed, "report": {"rows": "label", "baseline": "CLIP"},
                   "data": {"format": "fundus_synth", "levels": ["disease", "description"]}, "objective": obj,
                   "tasks": ["linear_probe/disease_multilabel"]}
            (d / "config.yaml").write_text(yaml.safe_dump(cfg))
            key = "linear_probe/disease_multilabel"
            a = auc + 0.01 * seed
            metrics = {"seed": seed, f"{key}/auc": a, f"{key}/map": a / 2, f"{key}/acc": 0.8, f"{key}/f1": 0.5}
            for ds, target in (("fundus_synth-dr", "dr_grade"), ("fundus_synth-amd", "amd")):
                for task in ("linear_probe", "finetune"):
                    metrics.update({f"{ds}/{task}/{target}/{m}": a - 0.1 * i for i, m in enumerate(("auc", "acc", "map"))})
                    metrics[f"{ds}/{task}/{target}/n_test"] = 200
            (d / "metrics.json").write_text(json.dumps(metrics))
            (d / "done").write_text("")


def test_the_docs_show_commands():
    modules = {shlex.split(c, comments=True)[2] for _, c in COMMANDS}
    assert {"bench.run", "bench.report"} <= modules
    # the README shows the two commands; every page of docs/ is scanned
    readme = {shlex.split(c, comments=True)[2] for d, c in COMMANDS if d == "README.md"}
    assert {"bench.run", "bench.report"} <= readme
    assert any(d.startswith("docs/") for d, _ in COMMANDS)


@pytest.mark.parametrize("doc,command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_command_runs(doc, command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for p in DOCS:
        for name, text in _shown_files(p).items():
            (tmp_path / name).write_text(text)
    args = shlex.split(command, comments=True)
    module, rest = args[2], args[3:]
    if module == "bench.run":
        from bench.run import main

        if not any(a in ("-h", "--help") for a in rest):
            rest = [a for a in rest if not a.startswith("results_dir=")] + ["dry_run=true", f"results_dir={tmp_path / 'r'}"]
        code = main(rest)
    elif module in ("bench.report", "bench.status"):
        for a in rest:
            if a.startswith("results/"):
                _synthetic_grid(tmp_path / "results", Path(a).name)
        if module == "bench.report":
            from bench.report import main
        else:
            from bench.status import main
        code = main(rest)
    else:
        old = sys.argv
        sys.argv = [module, *rest, "--help"]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                runpy.run_module(module, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code or 0
        finally:
            sys.argv = old
    out, err = capsys.readouterr()
    assert code == 0, f"{doc}: {command}\n{out}\n{err}"
