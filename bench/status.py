"""``python -m bench.status results/<grid>``: progress of a grid's cells, wherever they run.

One line per cell: its state (done / failed / corrupt / running / pending, see ``bench.store``), label,
seed, the scheduler job that runs it (from ``job.json`` / ``running.json``) and that job's SLURM state
(``squeue``, else ``sacct``), the last logged step, epoch and loss (from ``history.csv``), for failed cells
the error, for corrupt cells the damaged files (repair: ``python -m bench.run ... rerun_corrupt=true``);
then the counts. A damaged file never stops the command.

A cell whose SLURM job has left the queue without the cell recording a verdict (cancelled with
``scancel``, killed, out of memory, node failure, time limit without requeue) is marked failed here:
``error.json`` is written with type ``Cancelled`` / ``Timeout`` / ``JobFailed`` (``--no-update`` only
reports). Rerun the grid with ``rerun_failed=true`` to resume such cells from their checkpoints.

Examples:
  python -m bench.status results/ablation
  python -m bench.status results/ablation --wait          # poll until nothing is queued or running
  python -m bench.status results/ablation --json          # machine-readable

Exit status: 0; with ``--wait``, 0 when every cell is done and 1 otherwise; 2 for a bad path.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from . import claim as claims
from . import store
from .launch import is_active, settle_slurm_job, slurm_states

log = logging.getLogger("bench.status")


def _cell_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and ((p / "config.yaml").exists() or (p / "job.json").exists()))


def last_progress(cell_dir: Path) -> dict[str, Any]:
    """The last row of ``history.csv`` (step, epoch, loss, ...), as numbers where possible; {} if none."""
    path = Path(cell_dir) / "history.csv"
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except (OSError, csv.Error):
        return {}
    if not rows:
        return {}
    out: dict[str, Any] = {}
    for k, v in rows[-1].items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = v
    out["updated"] = path.stat().st_mtime
    return out


def _label(cell_dir: Path) -> tuple[str, Any]:
    cfg = store.read_config(cell_dir)
    if cfg is None:
        return "?", "?"
    return str(cfg.get("label", "?")), cfg.get("seed", "?")


def collect(root: Path, update: bool = True) -> list[dict[str, Any]]:
    """One record per cell of ``root``; with ``update``, cells whose SLURM job ended without a verdict are
    marked failed first (see the module docstring)."""
    dirs = _cell_dirs(root)
    jobs = {d.name: store.read_job(d) or {} for d in dirs}
    running = {d.name: store.read_running(d) or {} for d in dirs}
    ids: dict[str, str] = {}
    for d in dirs:
        job_id = running[d.name].get("slurm_array") or running[d.name].get("slurm_job_id")
        if not job_id and jobs[d.name].get("launcher") == "slurm":
            job_id = jobs[d.name].get("job_id")
        if job_id:
            ids[d.name] = str(job_id)
    states = slurm_states(sorted(set(ids.values()))) if ids else {}
    records = []
    for d in dirs:
        job_id = ids.get(d.name)
        slurm = states.get(job_id, "") if job_id else ""
        if update and job_id and slurm and not is_active(slurm) and slurm != "UNKNOWN":
            settle_slurm_job(d, job_id, None if slurm == "GONE" else slurm)
        info = store.inspect(d)
        state = info.state
        if state == store.RUNNING and job_id and slurm and slurm != "UNKNOWN" and not is_active(slurm):
            state = store.PENDING  # a marker left by a job that is gone (reported, not settled: --no-update)
        label, seed = _label(d)
        prog = last_progress(d)
        error = None
        if state == store.FAILED:
            error = store.error_line(d)
        elif state == store.CORRUPT:
            error = "; ".join(info.problems)
            if store.REPAIR_OPTION not in error:
                error += f" (repair: python -m bench.run ... {store.REPAIR_OPTION})"
        records.append({
            "cell": d.name, "state": state, "label": label, "seed": seed,
            "launcher": jobs[d.name].get("launcher", ""), "job": job_id or jobs[d.name].get("job_id", ""),
            "slurm": slurm, "step": prog.get("step"), "epoch": prog.get("epoch"), "loss": prog.get("loss"),
            "updated": prog.get("updated"), "restarts": running[d.name].get("slurm_restart_count"), "error": error,
            "held_by": claims.describe(info.claim) if state == store.RUNNING else None,
        })
    return records


def counts(records: list[dict[str, Any]]) -> dict[str, int]:
    out = {s: 0 for s in (store.DONE, store.FAILED, store.CORRUPT, store.RUNNING, store.PENDING)}
    for r in records:
        out[r["state"]] += 1
    out["queued"] = sum(1 for r in records if r["state"] == store.PENDING and r["slurm"] and is_active(r["slurm"]))
    return out


def _fmt(r: dict[str, Any]) -> list[Any]:
    step = f"{int(r['step'])}" if isinstance(r["step"], float) and math.isfinite(r["step"]) else ""
    if isinstance(r["epoch"], float) and step:
        step += f" (ep {r['epoch']:.2f})"
    loss = "" if not isinstance(r["loss"], float) else f"{r['loss']:.4f}"
    age = "" if r["updated"] is None else f"{int(time.time() - r['updated'])}s ago"
    job = r["job"] + (f" (restart {r['restarts']})" if r["restarts"] else "")
    return [r["cell"], r["state"], r["label"], r["seed"], job, r["slurm"], step, loss, age]


def render(root: Path, records: list[dict[str, Any]]) -> str:
    lines = [tabulate([_fmt(r) for r in records], headers=["cell", "state", "label", "seed", "job", "slurm", "step",
                                                           "loss", "logged"], disable_numparse=True)]
    for r in records:
        if r["error"]:
            lines.append(f"{r['state'].upper()} {r['cell']} ({r['label']}): {r['error']}")
    c = counts(records)
    lines.append(f"{len(records)} cells in {root}: {c['done']} done, {c['failed']} failed, "
                 + (f"{c['corrupt']} corrupt, " if c["corrupt"] else "") + f"{c['running']} running, "
                 f"{c['pending']} pending" + (f" ({c['queued']} queued in SLURM)" if c["queued"] else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.status", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid_dir", help="a grid's results folder, e.g. results/ablation")
    parser.add_argument("--no-update", action="store_true", help="only report: do not mark cells of ended jobs failed")
    parser.add_argument("--wait", action="store_true", help="poll until no cell is running and no job is queued or running")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between polls with --wait (default 30)")
    parser.add_argument("--json", action="store_true", help="print the records as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    root = Path(args.grid_dir)
    if not root.is_dir():
        print(f"error: {root} is not a folder (give a grid's results folder, e.g. results/smoke)", file=sys.stderr)
        return 2
    while True:
        try:
            records = collect(root, update=not args.no_update)
        except OSError as e:
            print(f"error: cannot read {root}: {e}", file=sys.stderr)
            return 2
        c = counts(records)
        busy = c["running"] + sum(1 for r in records if r["slurm"] and is_active(r["slurm"]))
        if not args.wait or busy == 0:
            break
        print(f"{time.strftime('%H:%M:%S')} {c['done']} done, {c['failed']} failed, {c['running']} running, "
              f"{c['queued']} queued; next check in {args.interval:.0f}s", file=sys.stderr)
        time.sleep(args.interval)
    print(json.dumps(records, indent=2, default=str) if args.json else render(root, records))
    if args.wait:
        return 0 if records and c["done"] == len(records) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
