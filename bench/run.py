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
runs. Exit status: 0 when every cell is done (or, with launcher.wait=false, submitted or already queued),
1 when any cell is left not done (failed, corrupt, run by another process, not run), 2 for a configuration
error or a results folder that cannot be written, 128+N when stopped by signal N (Ctrl-C: 130, SIGTERM: 143).

Each cell is claimed before it runs (results/README.md "Claims"): two runs on one results folder, or a
run beside a SLURM array, train each cell once. rerun_corrupt=true repairs corrupt cells (their valid files
are kept, damaged ones set aside as <file>.corrupt and recomputed).

Help topics: python -m bench.run --help TOPIC, TOPIC one of keys (every run-config key, default),
data (formats), image, text (towers), objective, tasks, launcher, grids.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from omegaconf import OmegaConf
from tabulate import tabulate

from . import claim as claims
from . import store
from .config import ConfigError, parse_overrides
from .grid import load
from .interrupts import interrupt_on_terminate
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
    flags = _flags(first)
    queued = _queued(root, [c for c in cells if states[c.id] in (store.PENDING, store.FAILED, store.CORRUPT)])

    if first.dry_run:
        return _dry_run(cells, states, queued, root, launcher.describe(launcher_opts))

    todo = [c for c in cells if c.id not in queued and store.runnable(states[c.id], **flags)]
    _announce(raw["name"], cells, states, todo, queued, root)
    if todo:
        try:  # before any data is built (the preflight builds it)
            store.check_results_dir(root)
        except store.StoreError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if todo and first.preflight:
        from .preflight import PreflightError, check

        try:
            check(todo)
        except PreflightError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if todo:
        code = _launch(launcher, launcher_opts, todo, root)
        if code is not None:
            return code
    return _summarise(cells, root, flags, queued, waits=launcher_opts.get("wait", True) is not False)


# ----------------------------------------------------------------------------------------------------------
# execution: what happens once the cells are known
# ----------------------------------------------------------------------------------------------------------
def _flags(cfg) -> dict[str, bool]:
    return {"rerun_failed": cfg.get("rerun_failed", False) is True, "rerun_corrupt": cfg.get("rerun_corrupt", False) is True}


def _dry_run(cells: list, states: dict[str, str], queued: dict[str, str], root: Path, launcher: str) -> int:
    rows = [[c.id, c.label, int(c.config.seed), states[c.id], queued.get(c.id, "")] for c in cells]
    print(tabulate(rows, headers=["cell", "label", "seed", "state", "queued job"]))
    counts = {s: list(states.values()).count(s) for s in (store.DONE, store.FAILED, store.CORRUPT, store.RUNNING, store.PENDING)}
    print(f"\n{len(cells)} cells in {root}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v or k != store.CORRUPT)
          + (f" ({len(queued)} queued in SLURM)" if queued else ""))
    print(launcher)
    return 0


def _announce(name: str, cells: list, states: dict[str, str], todo: list, queued: dict[str, str], root: Path) -> None:
    n_done = sum(s == store.DONE for s in states.values())
    print(f"grid {name}: {len(cells)} cells, {n_done} already done, {len(todo)} to run -> {root}", file=sys.stderr)
    if queued:
        print(f"{len(queued)} cell(s) are already queued or running in SLURM ({', '.join(sorted(set(queued.values())))}): "
              f"not submitted again; see python -m bench.status {root}", file=sys.stderr)


def _launch(launcher, launcher_opts: dict, todo: list, root: Path) -> int | None:
    """Run (or submit) the cells; an exit status when the run stops here, None to go on to the summary."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with interrupt_on_terminate():
            result = launcher.run(todo, root, launcher_opts)
    except (LauncherError, store.StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the results folder went away or became unwritable between the check and now
        print(f"error: results folder {root}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: the cells stopped release their claims
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"interrupted ({signal.Signals(signum).name}): the unfinished cells resume from their checkpoints when "
              f"the grid is run again; see python -m bench.status {root}", file=sys.stderr)
        return 128 + int(signum)
    if not result.waited:
        print(result.message)
        return 0
    return None


def _summarise(cells: list, root: Path, flags: dict[str, bool], queued: dict[str, str], waits: bool = True) -> int:
    """The final states (read again: other runs may have worked beside this one), what to do about the cells
    not done, the report when every cell is done. Exit status 0 only when every cell is done, or, for a run
    that does not wait (launcher.wait=false), when every cell not done is queued or running."""
    final = {c.id: store.inspect(root / c.id) for c in cells}
    print(tabulate([[c.id, c.label, int(c.config.seed), final[c.id].state] for c in cells], headers=["cell", "label", "seed", "state"]))
    by_state: dict[str, list] = {s: [c for c in cells if final[c.id].state == s] for s in store.STATES}
    for c in by_state[store.FAILED]:
        print(f"FAILED {c.id} ({c.label}): {store.error_line(root / c.id)}  -> {root / c.id / 'error.json'}")
    for c in by_state[store.CORRUPT]:
        print(f"CORRUPT {c.id} ({c.label}): {'; '.join(final[c.id].problems)}")
    if by_state[store.CORRUPT]:
        print(f"{len(by_state[store.CORRUPT])} corrupt cell(s): repair them with {store.REPAIR_OPTION} (what is valid is "
              f"kept, what is not is set aside as <file>.corrupt and recomputed)")
    for c in by_state[store.RUNNING]:
        print(f"RUNNING {c.id} ({c.label}): held by {claims.describe(final[c.id].claim)}")
    if by_state[store.RUNNING]:
        print(f"{len(by_state[store.RUNNING])} cell(s) are being run by other processes; follow them with "
              f"python -m bench.status {root}")
    if by_state[store.PENDING]:
        print(f"{len(by_state[store.PENDING])} cell(s) are not run yet (queued in SLURM, or interrupted); "
              f"python -m bench.status {root}")
    if by_state[store.FAILED] and not flags["rerun_failed"]:
        print(f"{len(by_state[store.FAILED])} failed cell(s) were not rerun; pass rerun_failed=true to retry them")
    print(f"results: {root}")
    if len(by_state[store.DONE]) < len(cells):
        under_way = by_state[store.RUNNING] + [c for c in by_state[store.PENDING] if c.id in queued]
        return 0 if not waits and len(by_state[store.DONE]) + len(under_way) == len(cells) else 1
    from .report import ReportError, write_report

    try:
        paths = write_report(root)
    except ReportError as e:  # e.g. cells of an older grid definition in the same folder
        print(f"report not written: {e}\n(write it with: python -m bench.report {root} allow_missing=true)")
    else:
        print(f"table: {paths.get('table', paths['markdown'])}")
        print(f"report: {paths['markdown']}")
        print(paths["table_text"])
    return 0


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
