"""The documentation site builds with ``mkdocs build --strict`` (skipped when mkdocs is not installed), so a
page missing from the nav, a broken link or a broken anchor fails locally as it does in CI;
the install lines of the docs are the ones CI runs."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs-material is not installed (pip install -e '.[docs]')",
)


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@needs_mkdocs
def test_the_site_builds_strictly(tmp_path):
    r = _build(ROOT, tmp_path / "site")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "objectives" / "mgll" / "index.html").is_file()


@needs_mkdocs
def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", copy / "docs")
    page = copy / "docs" / "troubleshooting.md"
    page.write_text(page.read_text() + "\nSee [a page that does not exist](nowhere.md).\n")
    r = _build(copy, tmp_path / "site")
    assert r.returncode != 0
    assert "nowhere.md" in r.stdout + r.stderr


def test_getting_started_shows_the_install_lines_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    install = [line.strip() for line in ci if line.strip().startswith(("python3 -m venv", ". .venv", "python -m pip install"))]
    assert len(install) >= 3
    page = (ROOT / "docs" / "getting-started.md").read_text().splitlines()
    assert [line for line in install if line not in page] == []
