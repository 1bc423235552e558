"""``bench.report`` on synthetic grid folders: mean/std, marks, LaTeX, missing cells, ablation and granularity
tables, row keys, options, figures. Cells are written by hand (config.yaml, metrics.json, done, ...)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.report import MissingCellsError, ReportError, main, write_report
from bench.report.latex import escape

TASK = "linear_probe/disease_multilabel"
NO_FIGS = ["md", "tex", "csv"]


def cell(root, name, *, label, objective=None, seed=0, metrics=None, state="done", data=None, tasks=None,
         history=None, baseline="CLIP"):
    """Write one cell folder: config.yaml always, then metrics.json + done (done), error.json (failed)."""
    d = root / name
    d.mkdir(parents=True)
    cfg = {
        "grid": root.name,
        "label": label,
        "seed": seed,
        "report": {"rows": "label", "baseline": baseline},
        "data": {"format": "fundus_synth", "levels": ["category", "disease", "description"], **(data or {})},
        "objective": objective or {"name": "clip", "level": "disease"},
        "tasks": tasks or [TASK],
    }
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    if state == "done":
        (d / "metrics.json").write_text(json.dumps({"seed": seed, "versions": {"torch": "x"}, **(metrics or {})}))
        (d / "done").write_text("")
    elif state == "failed":
        (d / "error.json").write_text(json.dumps({"type": "ValueError", "message": "boom", "traceback": ""}))
    if history is not None:
        pd.DataFrame(history).to_csv(d / "history.csv", index=False)
    return d


def lp(auc, map_=0.3, acc=0.8, f1=None, task=TASK, **extra):
    out = {f"{task}/auc": auc, f"{task}/map": map_, f"{task}/acc": acc, f"{task}/solver": "sklearn", **extra}
    if f1 is not None:
        out[f"{task}/f1"] = f1
    return out


def md_cell(text: str, row: str, column_index: int) -> str:
    """The text of one Markdown table cell (row by its first cell, column 0 = first metric column)."""
    for line in text.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if parts and parts[0] == row:
            return parts[column_index]
    raise AssertionError(f"no row {row!r} in\n{text}")


@pytest.fixture
def grid(tmp_path):
    root = tmp_path / "g"
    root.mkdir()
    return root


def test_mean_std_seed_count_and_all_csv(grid):
    for s, (a, b) in enumerate([(0.50, 0.70), (0.52, 0.72), (0.54, 0.74)]):
        cell(grid, f"c{s}", label="CLIP", seed=s, metrics=lp(a, f1=0.1))
        cell(grid, f"m{s}", label="MGLL", seed=s, objective={"name": "mgll"}, metrics=lp(b, f1=0.2))
    paths = write_report(grid, formats=NO_FIGS)
    main_md = paths["table_text"]
    assert md_cell(main_md, "CLIP", 1) == "<ins>52.00 ± 2.00</ins> (n=3)"
    # the difference to CLIP is +0.20 on every seed: zero variance, p = 0, a dagger
    assert md_cell(main_md, "MGLL", 1) == "**72.00 ± 2.00**† (n=3)"
    long = pd.read_csv(paths["tables"]["main"]["csv"])
    auc = long[(long["label"] == "MGLL") & (long["column"] == f"{TASK}/auc")].iloc[0]
    assert auc["mean"] == pytest.approx(0.72) and auc["std"] == pytest.approx(0.02) and auc["n"] == 3
    assert auc["mark"] == "best"
    # default columns: auc, map, acc and f1 (present) of the task; strings like solver are not columns
    assert set(long["column"]) == {f"{TASK}/{m}" for m in ("auc", "map", "acc", "f1")}
    allc = pd.read_csv(paths["csv"])
    assert len(allc) == 6 and set(allc["state"]) == {"done"} and "cfg.objective.name" in allc.columns
    # the runner's contract: report.md, table.md (with the metric key), table_text
    assert paths["markdown"].name == "report.md" and paths["markdown"].exists()
    assert f"{TASK}/auc" in (grid / "report" / "table.md").read_text()


def test_best_bold_second_underlined_higher_is_better(grid):
    for label, auc, acc in (("CLIP", 0.60, 0.90), ("A", 0.70, 0.80), ("B", 0.80, 0.70)):
        cell(grid, label, label=label, metrics=lp(auc, acc=acc))
    paths = write_report(grid, formats=NO_FIGS)
    t = paths["table_text"]
    assert md_cell(t, "B", 1) == "**80.00** (n=1)"
    assert md_cell(t, "A", 1) == "<ins>70.00</ins> (n=1)"
    assert md_cell(t, "CLIP", 1) == "60.00 (n=1)"
    assert md_cell(t, "CLIP", 3) == "**90.00** (n=1)" and md_cell(t, "A", 3) == "<ins>80.00</ins> (n=1)"
    tex = paths["tables"]["main"]["tex"].read_text()
    assert r"B & \textbf{80.00}" in tex and r"A & \underline{70.00}" in tex


def test_ties_share_the_mark_and_next_value_is_second(grid):
    # 0.7000 and 0.70004 are both shown as 70.00: a tie for best; 0.65 is then second (dense ranks)
    for label, auc in (("CLIP", 0.65), ("A", 0.70), ("B", 0.70004), ("C", 0.60)):
        cell(grid, label, label=label, metrics=lp(auc))
    t = write_report(grid, formats=NO_FIGS)["table_text"]
    assert md_cell(t, "A", 1).startswith("**70.00**") and md_cell(t, "B", 1).startswith("**70.00**")
    assert md_cell(t, "CLIP", 1).startswith("<ins>65.00</ins>")
    assert not md_cell(t, "C", 1).startswith(("**", "<ins>"))


def test_all_equal_values_are_all_bold_and_single_row_unmarked(grid, tmp_path):
    for label in ("CLIP", "A"):
        cell(grid, label, label=label, metrics=lp(0.5))
    t = write_report(grid, formats=NO_FIGS)["table_text"]
    assert md_cell(t, "CLIP", 1) == md_cell(t, "A", 1) == "**50.00** (n=1)"
    one = tmp_path / "one"
    cell(one, "x", label="CLIP", metrics=lp(0.5))
    assert md_cell(write_report(one, formats=NO_FIGS)["table_text"], "CLIP", 1) == "50.00 (n=1)"


def test_lower_is_better_metrics(grid):
    costs = {"CLIP": (10.0, 900.0, 0.002), "A": (12.0, 800.0, 0.001), "B": (11.0, 1000.0, 0.003)}
    for label, (spe, mem, fwd) in costs.items():
        cell(grid, label, label=label, metrics={**lp(0.5, **{"val_log_loss": mem / 1000}),
                                                "train/seconds_per_epoch": spe, "peak_memory_mb": mem,
                                                "train/objective_forward_s_per_step": fwd})
    paths = write_report(grid, columns=["auc", "val_log_loss"], formats=NO_FIGS)
    cost = paths["tables"]["cost"]["md"].read_text()
    assert md_cell(cost, "CLIP", 1) == "**10.00** (n=1)" and md_cell(cost, "B", 1) == "<ins>11.00</ins> (n=1)"
    assert md_cell(cost, "A", 2) == "**800** (n=1)" and md_cell(cost, "CLIP", 2) == "<ins>900</ins> (n=1)"
    assert md_cell(cost, "A", 3) == "**1.000** (n=1)"  # ms per step
    assert "loss time (ms/step)" in cost
    t = paths["table_text"]
    assert md_cell(t, "A", 2) == "**0.800** (n=1)" and md_cell(t, "CLIP", 2) == "<ins>0.900</ins> (n=1)"


def _balanced(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        if ch in "{}" and i > 0 and text[i - 1] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_well_formed_and_escaped(grid):
    cell(grid, "a", label="CLIP", metrics=lp(0.5))
    cell(grid, "b", label="MGLL_50%", objective={"name": "mgll", "terms": ["sclip", "pointwise"]},
         metrics=lp(0.6))
    paths = write_report(grid, formats=["tex"])
    for name, files in paths["tables"].items():
        tex = files["tex"].read_text()
        assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 1, name
        assert _balanced(tex), name
        assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
        ncols = len(re.search(r"\\begin\{tabular\}\{([lc]+)\}", tex).group(1))
        rows = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0].strip().splitlines()
        for line in rows:  # every body row has one cell per column
            assert line.endswith(r" \\") and len(re.findall(r"(?<!\\)&", line)) == ncols - 1, line
        body = tex.replace(r"\_", "").replace(r"\%", "")
        assert "_" not in body and "%" not in body, name  # every underscore and percent sign escaped
        assert "±" not in tex and "✓" not in tex and "—" not in tex  # only ASCII LaTeX
    main_tex = paths["tables"]["main"]["tex"].read_text()
    assert r"MGLL\_50\%" in main_tex and r"\multicolumn{3}{c}{linear\_probe/disease\_multilabel}" in main_tex
    assert r"\cmidrule(lr){2-4}" in main_tex and r"\label{tab:g-main}" in main_tex
    assert r"$\surd$" in paths["tables"]["ablation"]["tex"].read_text()
    assert escape("a_b%c&d#e$f{g}h~i^j\\k") == (r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j"
                                              r"\textbackslash{}k")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(grid, tmp_path):
    from bench.report.latex import document

    for s in range(2):
        cell(grid, f"a{s}", label="CLIP", seed=s, metrics=lp(0.5 + s / 100))
        cell(grid, f"b{s}", label="MGLL_x%", seed=s, objective={"name": "mgll"}, metrics=lp(0.6 + s / 50))
    cell(grid, "c0", label="Other", state="failed")
    paths = write_report(grid, formats=["tex"], allow_missing=True)
    doc = tmp_path / "doc.tex"
    doc.write_text(document([f["tex"].read_text() for f in paths["tables"].values()]))
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]


def test_missing_cells_stop_the_report_with_a_list(grid, capsys):
    cell(grid, "aaa", label="CLIP", metrics=lp(0.5))
    cell(grid, "bbb", label="MGLL", seed=0, state="failed")
    cell(grid, "ccc", label="MGLL", seed=1, state="pending")
    with pytest.raises(MissingCellsError) as e:
        write_report(grid)
    lines = {(m.cell, m.label, m.state) for m in e.value.missing}
    assert lines == {("bbb", "MGLL", "failed"), ("ccc", "MGLL", "pending")}
    assert "bbb  MGLL  failed" in str(e.value) and "allow_missing=true" in str(e.value)
    assert not (grid / "report").exists()  # nothing written
    assert main([str(grid)]) == 2
    err = capsys.readouterr().err
    assert "ccc  MGLL  pending" in err and "bbb  MGLL  failed" in err


def test_allow_missing_shows_em_dash_and_lists_them(grid):
    cell(grid, "c0", label="CLIP", seed=0, metrics=lp(0.5))
    cell(grid, "c1", label="CLIP", seed=1, metrics=lp(0.7))
    cell(grid, "c2", label="CLIP", seed=2, state="failed")
    cell(grid, "m0", label="MGLL", seed=0, objective={"name": "mgll"}, state="failed")
    paths = write_report(grid, allow_missing=True, formats=NO_FIGS)
    t = paths["table_text"]
    assert md_cell(t, "MGLL", 1) == "—"
    assert md_cell(t, "CLIP", 1) == "60.00 ± 14.14 (n=2)"
    block = paths["tables"]["main"]["md"].read_text()
    assert "c2 (CLIP, seed 2): failed" in block and "m0 (MGLL, seed 0): failed" in block
    assert "---" in paths["tables"]["main"]["tex"].read_text()
    report = paths["markdown"].read_text()
    assert "**Missing**" in report and "`m0` MGLL: failed" in report


def test_done_cell_lacking_a_metric_is_missing(grid):
    cell(grid, "a", label="CLIP", metrics=lp(0.5, f1=0.1))
    cell(grid, "b", label="MGLL", objective={"name": "mgll"}, metrics=lp(0.6))  # no f1
    with pytest.raises(MissingCellsError) as e:
        write_report(grid, formats=NO_FIGS)
    assert [(m.cell, m.state) for m in e.value.missing] == [("b", "done")]
    assert f"no {TASK}/f1" in str(e.value)
    t = write_report(grid, formats=NO_FIGS, allow_missing=True)["table_text"]
    assert md_cell(t, "MGLL", 4) == "—"


def test_nan_metric_is_shown_not_hidden(grid):
    cell(grid, "a", label="CLIP", metrics=lp(float("nan")))
    cell(grid, "b", label="MGLL", objective={"name": "mgll"}, metrics=lp(0.6))
    t = write_report(grid, formats=NO_FIGS)["table_text"]
    assert md_cell(t, "CLIP", 1) == "NaN (n=1)" and md_cell(t, "MGLL", 1) == "60.00 (n=1)"


def test_ablation_table_check_marks_in_paper_order(grid):
    rows = {
        "full": {"name": "mgll"},
        "sclip+p": {"name": "mgll", "terms": ["sclip", "pointwise"]},
        "sclip": {"name": "mgll", "terms": ["sclip"]},
        "p": {"name": "mgll", "terms": ["pointwise"]},
        "CLIP": {"name": "clip", "level": "disease"},
        "released": {"name": "mgll_released", "levels": ["disease", "description"]},
        "siglip": {"name": "siglip"},
    }
    for i, (label, obj) in enumerate(rows.items()):
        cell(grid, f"c{i}", label=label, objective=obj, metrics=lp(0.5 + i / 100))
    paths = write_report(grid, formats=NO_FIGS)
    abl = paths["tables"]["ablation"]["md"].read_text()
    table_rows = [line.strip("|").split("|") for line in abl.splitlines() if line.startswith("| ")][1:]
    got = [(r[0].strip(), r[1].strip(), r[2].strip(), r[3].strip()) for r in table_rows]
    assert got == [
        ("CLIP", "", "", ""),
        ("p", "", "✓", ""),
        ("sclip", "✓", "", ""),
        ("sclip+p", "✓", "✓", ""),
        ("full", "✓", "✓", "✓"),
        ("released", "✓", "✓", "✓"),
    ]  # siglip is not an MGLL-family row
    header = [h.strip() for h in abl.splitlines()[2].strip("|").split("|")]
    assert header[:5] == ["label", "sCLIP", "P", "sKL", f"{TASK}/auc"]
    assert "no t-test (fewer than 2 paired seeds): p, sclip, sclip+p, full, released" in abl


def test_no_ablation_or_granularity_table_without_mgll_rows(grid):
    cell(grid, "a", label="CLIP", metrics=lp(0.5))
    cell(grid, "b", label="SigLIP", objective={"name": "siglip"}, metrics=lp(0.6))
    paths = write_report(grid, formats=NO_FIGS)
    assert set(paths["tables"]) == {"main"}
    assert "Objective ablation" not in paths["markdown"].read_text()


def test_granularity_table_rows(grid):
    levels = {"MGLL-1": ["disease"], "MGLL-2": ["disease", "description"], "MGLL-3": None}
    for i, (label, lv) in enumerate(levels.items()):
        obj = {"name": "mgll", "terms": ["sclip", "pointwise"]}
        if lv:
            obj["levels"] = lv
        for s in range(2):
            cell(grid, f"m{i}{s}", label=label, seed=s, objective=obj, metrics=lp(0.6 + i / 10 + s / 100))
    cell(grid, "c", label="CLIP", metrics=lp(0.5))
    paths = write_report(grid, formats=NO_FIGS)
    gran = paths["tables"]["granularity"]["md"].read_text()
    rows = [[p.strip() for p in line.strip("|").split("|")] for line in gran.splitlines() if line.startswith("| ")]
    assert rows[0][:4] == ["label", "objective", "levels", "level names"]
    assert [r[:4] for r in rows[1:]] == [
        ["MGLL-1", "mgll", "1", "disease"],
        ["MGLL-2", "mgll", "2", "disease, description"],
        ["MGLL-3", "mgll", "3", "category, disease, description"],
    ]  # CLIP (one level, one objective setting) is not part of it
    assert rows[3][4].startswith("**80.50 ± 0.71**")


def test_rows_get_the_config_key_that_varies_within_them(grid):
    for rate in (0.0, 0.3):
        for s in range(2):
            cell(grid, f"c{rate}{s}", label="CLIP", seed=s, data={"missing_rate": rate}, metrics=lp(0.5 - rate / 10))
            cell(grid, f"m{rate}{s}", label="MGLL", seed=s, objective={"name": "mgll"}, data={"missing_rate": rate},
                 metrics=lp(0.7 - rate / 10 + s / 100))
    paths = write_report(grid, formats=NO_FIGS)
    t = paths["table_text"]
    header = [h.strip() for h in t.splitlines()[0].strip("|").split("|")]
    assert header[:2] == ["label", "data.missing_rate"]
    assert [line.split("|")[1:3] for line in t.splitlines()[2:]][0][0].strip() == "CLIP"
    long = pd.read_csv(paths["tables"]["main"]["csv"])
    assert set(long["n"]) == {2}  # one configuration per row, averaged over its seeds only
    assert len(long[long["column"] == f"{TASK}/auc"]) == 4
    # rows=objective.name works too
    t2 = write_report(grid, rows="objective.name", formats=NO_FIGS)["table_text"]
    assert "objective.name" in t2.splitlines()[0] and "mgll" in t2


def test_label_fraction_axis_splits_rows_and_not_done_cells_do_not(grid):
    for lf in (0.1, 1.0):
        tasks = [{"name": "linear_probe", "target": "disease_multilabel", "label_fraction": lf}]
        for s in range(2):
            m = {**lp(0.5 + lf / 10 + s / 100), f"{TASK}/label_fraction": lf}
            cell(grid, f"c{lf}{s}", label="CLIP", seed=s, tasks=tasks, metrics=m)
        cell(grid, f"m{lf}", label="MGLL", objective={"name": "mgll"}, tasks=tasks, metrics=lp(0.7 + lf / 10))
        cell(grid, f"f{lf}", label="MGLL", seed=1, objective={"name": "mgll"}, tasks=tasks, state="failed")
    paths = write_report(grid, allow_missing=True, formats=["md", "png"])
    header = [h.strip() for h in paths["table_text"].splitlines()[0].strip("|").split("|")]
    assert header[:2] == ["label", f"label_fraction:{TASK}"]
    rows = [[p.strip() for p in line.strip("|").split("|")][:3] for line in paths["table_text"].splitlines()[2:]]
    assert [r[:2] for r in rows] == [["CLIP", "0.1"], ["CLIP", "1.0"], ["MGLL", "0.1"], ["MGLL", "1.0"]]
    assert rows[0][2].endswith("(n=2)") and rows[2][2].endswith("(n=1)")
    assert "metric_vs_label_fraction" in paths["figures"]


def test_columns_and_baseline_options(grid):
    cell(grid, "a", label="CLIP", metrics=lp(0.5, f1=0.1))
    cell(grid, "b", label="MGLL", objective={"name": "mgll"}, metrics=lp(0.6, f1=0.2))
    t = write_report(grid, columns=["auc"], formats=NO_FIGS)["table_text"]
    assert f"{TASK}/auc" in t and f"{TASK}/map" not in t
    t = write_report(grid, columns=[TASK], formats=NO_FIGS)["table_text"]
    assert f"{TASK}/f1" in t
    t = write_report(grid, columns=[f"{TASK}/f1"], formats=NO_FIGS)["table_text"]
    assert f"{TASK}/f1" in t and f"{TASK}/auc" not in t
    with pytest.raises(ReportError, match="aucc.*did you mean auc"):
        write_report(grid, columns=["aucc"], formats=NO_FIGS)
    with pytest.raises(ReportError, match="baseline='SigLIP' is not a row"):
        write_report(grid, baseline="SigLIP", formats=NO_FIGS)
    with pytest.raises(ReportError, match="rows='objetive.name'.*did you mean objective.name"):
        write_report(grid, rows="objetive.name", formats=NO_FIGS)


def test_cli_help_options_and_errors(grid, tmp_path, capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("rows=", "columns=", "baseline=", "alpha=", "allow_missing=", "formats=", "out=", "n_boot="):
        assert opt in out
    cell(grid, "a", label="CLIP", metrics=lp(0.5))
    cell(grid, "b", label="MGLL", objective={"name": "mgll"}, metrics=lp(0.6))
    assert main([str(grid), "alowed_missing=true"]) == 2
    assert "did you mean allow_missing" in capsys.readouterr().err
    assert main([str(grid), "formats=md,svg"]) == 2
    assert "'svg' is unknown" in capsys.readouterr().err
    assert main([str(tmp_path / "nope")]) == 2
    assert "is not a results folder" in capsys.readouterr().err
    out_dir = tmp_path / "elsewhere"
    assert main([str(grid), "columns=[auc,map]", "formats=md,csv", f"out={out_dir}", "alpha=0.01"]) == 0
    printed = capsys.readouterr().out
    assert "MGLL" in printed and str(out_dir / "report.md") in printed
    assert (out_dir / "tables" / "main.md").exists() and not (out_dir / "tables" / "main.tex").exists()
    assert not (out_dir / "figures").exists() and not (grid / "report").exists()


def _grid_for_figures(root):
    """Two objectives x two seeds, varying missing rate, label fraction and number of levels; histories."""
    lf_tasks = [TASK, {"name": "linear_probe", "target": "disease_multilabel", "label_fraction": 0.1,
                       "key": "linear_probe/disease_multilabel@10"}]
    i = 0
    for label, obj in (("CLIP", {"name": "clip", "level": "disease"}),
                       ("MGLL", {"name": "mgll", "levels": ["disease", "description"]}),
                       ("MGLL-3", {"name": "mgll"})):
        for rate in (0.0, 0.5):
            for s in range(2):
                base = 0.5 + 0.1 * ("MGLL" in label) - rate / 10 + s / 100
                m = {**lp(base), **lp(base - 0.1, task="linear_probe/disease_multilabel@10",
                                       **{"linear_probe/disease_multilabel@10/label_fraction": 0.1}),
                     f"{TASK}/label_fraction": 1.0}
                hist = {"step": [1, 2, 3], "epoch": [1, 2, 3], "lr": [1e-3] * 3, "logit_scale": [14.0] * 3,
                        "loss": [3.0, 2.0, 1.5 + s / 10]}
                if label == "CLIP":
                    hist["clip/disease"] = hist["loss"]
                else:
                    hist["sclip/disease"], hist["skl"] = [2.0, 1.5, 1.0], [0.1, 0.05, 0.02]
                cell(root, f"x{i:02d}", label=label, objective=obj, seed=s, data={"missing_rate": rate},
                     tasks=lf_tasks, metrics=m, history=hist)
                i += 1


def test_figures_written_and_linked(grid):
    _grid_for_figures(grid)
    paths = write_report(grid)
    assert set(paths["figures"]) == {"bars", "loss_curves", "metric_vs_levels", "metric_vs_missing_rate",
                                     "metric_vs_label_fraction"}
    for name, files in paths["figures"].items():
        assert set(files) == {"png", "pdf"}
        png, pdf = files["png"].read_bytes(), files["pdf"].read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
        assert pdf[:5] == b"%PDF-" and len(pdf) > 2000, name
    report = paths["markdown"].read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) == 5 and all(not link.startswith("/") for link in links)
    assert all((paths["markdown"].parent / link).exists() for link in links)
    assert report.count("**Figure ") == 5 and report.count("**Table ") == len(paths["tables"])
    for name in paths["tables"]:
        assert f"(tables/{name}.md)" in report
    assert "granularity" in paths["tables"]


def test_figures_only_when_the_grid_varies_them(grid):
    cell(grid, "a", label="CLIP", metrics=lp(0.5))
    cell(grid, "b", label="MGLL", objective={"name": "mgll"}, metrics=lp(0.6))
    paths = write_report(grid, formats=["png"])
    assert set(paths["figures"]) == {"bars"}  # no history, no varying levels/missing rate/label fraction
    assert not (grid / "report" / "figures" / "bars.pdf").exists()
    assert np.asarray(bytearray(paths["figures"]["bars"]["png"].read_bytes())).size > 1000
