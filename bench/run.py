"""``python -m bench.run grid=NAME [key=value ...]``: expand a grid into cells and run those not done.

Examples:
  python -m bench.run grid=smoke
  python -m bench.run grid=smoke dry_run=true
  python -m bench.run grid=smoke print_config=true
  python -m bench.run grid=smoke objective=mgll train.epochs=2
  python -m bench.run grid=path/to/my_grid.yaml results_dir=/scratch/results
  python -m bench.run grid=ablation launcher=local launcher.parallel=2
  python -m bench.run grid=ablation launcher=slurm launcher.profile=local launcher.wait=false

Overrides are dotted keys with YAML values; SECTION=NAME picks the builder of an open section
(launcher=slurm is launcher.name=slurm; also objective=, image=, text=, data= for data.format). An override
of an axis key replaces that axis by the single value given; changing a section's builder drops the
options that were set for the previous one. Every problem of the whole grid is reported before anything
runs. Exit status: 0 every cell done, 1 a cell failed, 2 a configuration error.

Help topics: python -m bench.run --help TOPIC, TOPIC one of keys (every run-config key, default),
data (formats), image, text (towers), objective, tasks, launcher, grids.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf
from tabulate import tabulate

from . import store
from .config import ConfigError, parse_overrides
from .grid import load
from .launch import LauncherError, is_active, resolve, slurm_states

log = logging.getLogger("bench.run")


def _usage() -> str:
    from .help import topic_help

    return (f"usage: python -m bench.run [--help [TOPIC]] grid=NAME [key=value ...]\n\n{__doc__}\n"
            f"{topic_help('grids')}\n\n{topic_help('keys')}\n")


def _help(argv: list[str]) -> int | None:
    """``--help [TOPIC]`` anywhere on the command line: print it and return the exit status."""
    for i, a in enumerate(argv):
        if a in ("-h", "--help", "help"):
            topic = argv[i + 1] if i + 1 < len(argv) and "=" not in argv[i + 1] else None
            if topic is None:
                print(_usage())
                return 0
            from .help import topic_help

            try:
                print(topic_help(topic))
            except ConfigError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            return 0
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit status 0 (every cell done), 1 (a cell failed), 2 (a configuration error, printed
    as ``error: ...`` without a traceback)."""
    try:
        return _main(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    status = _help(argv)
    if status is not None:
        return status
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    grid_name = "smoke"
    rest = []
    for a in argv:
        if a.startswith("grid="):
            grid_name = a.split("=", 1)[1]
        else:
            rest.append(a)
    try:
        overrides = parse_overrides(rest)
        raw, cells = load(grid_name, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not cells:
        print("error: the grid expands to no cells", file=sys.stderr)
        return 2
    first = cells[0].config
    if first.print_config:
        for c in cells:
            print(f"# cell {c.id} ({c.label})\n{OmegaConf.to_yaml(c.config)}")
        return 0
    root = store.grid_dir(first.results_dir, raw["name"])
    try:
        launcher, launcher_opts = resolve(first.launcher)
    except LauncherError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    states = {c.id: store.cell_state(root / c.id) for c in cells}
    queued = _queued(root, [c for c in cells if states[c.id] in (store.PENDING, store.FAILED)])

    if first.dry_run:
        rows = [[c.id, c.label, int(c.config.seed), states[c.id], queued.get(c.id, "")] for c in cells]
        print(tabulate(rows, headers=["cell", "label", "seed", "state", "queued job"]))
        counts = {s: list(states.values()).count(s) for s in (store.DONE, store.FAILED, store.RUNNING, store.PENDING)}
        print(f"\n{len(cells)} cells in {root}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
              + (f" ({len(queued)} queued in SLURM)" if queued else ""))
        print(launcher.describe(launcher_opts))
        return 0

    todo = [c for c in cells if c.id not in queued
            and (states[c.id] == store.PENDING or (first.rerun_failed and states[c.id] == store.FAILED))]
    skipped_failed = [c for c in cells if states[c.id] == store.FAILED and not first.rerun_failed]
    n_done = sum(s == store.DONE for s in states.values())
    print(f"grid {raw['name']}: {len(cells)} cells, {n_done} already done, {len(todo)} to run -> {root}", file=sys.stderr)
    if queued:
        print(f"{len(queued)} cell(s) are already queued or running in SLURM ({', '.join(sorted(set(queued.values())))}): "
              f"not submitted again; see python -m bench.status {root}", file=sys.stderr)
    if todo and first.preflight:
        from .preflight import PreflightError, check

        try:
            check(todo)
        except PreflightError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if todo:
        root.mkdir(parents=True, exist_ok=True)
        try:
            result = launcher.run(todo, root, launcher_opts)
        except LauncherError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if not result.waited:
            print(result.message)
            return 0
    final = {c.id: store.cell_state(root / c.id) for c in cells}
    failed = [c for c in cells if final[c.id] == store.FAILED]
    print(tabulate([[c.id, c.label, int(c.config.seed), final[c.id]] for c in cells], headers=["cell", "label", "seed", "state"]))
    for c in failed:
        err = store.read_json(root / c.id / "error.json")
        print(f"FAILED {c.id} ({c.label}): {err['type']}: {err['message']}  -> {root / c.id / 'error.json'}")
    if skipped_failed:
        print(f"{len(skipped_failed)} failed cell(s) were not rerun; pass rerun_failed=true to retry them")
    print(f"results: {root}")
    if all(final[c.id] == store.DONE for c in cells):
        from .report import ReportError, write_report

        try:
            paths = write_report(root)
        except ReportError as e:  # e.g. cells of an older grid definition in the same folder
            print(f"report not written: {e}\n(write it with: python -m bench.report {root} allow_missing=true)")
        else:
            print(f"table: {paths.get('table', paths['markdown'])}")
            print(f"report: {paths['markdown']}")
            print(paths["table_text"])
    return 1 if failed else 0


def _queued(root: Path, cells: list) -> dict[str, str]:
    """Cells (not done, not running here) whose SLURM job is still queued or running: cell id -> job id."""
    jobs = {}
    for c in cells:
        info = store.read_job(root / c.id)
        if info and info.get("launcher") == "slurm" and info.get("job_id"):
            jobs[c.id] = str(info["job_id"])
    if not jobs:
        return {}
    states = slurm_states(sorted(set(jobs.values())))
    return {cid: jid for cid, jid in jobs.items() if is_active(states.get(jid, "GONE"))}


if __name__ == "__main__":
    sys.exit(main())
