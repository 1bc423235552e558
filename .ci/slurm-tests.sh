#!/usr/bin/env bash
# CI: the tests that need a real SLURM cluster (`pytest -m slurm`), against a single-node cluster with
# accounting brought up on localhost by slurm/local/up.sh (Debian/Ubuntu, root, ~30 s on a fresh machine)
# and torn down on exit (only what up.sh started). Run from the repository, with the project installed in
# the active Python (e.g. after .ci/run, or `. .venv/bin/activate`).
set -euo pipefail
cd "$(dirname "$0")/.."

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export CONTRASTIVE_BENCH_CACHE="${CONTRASTIVE_BENCH_CACHE:-$PWD/.cache}"
PYTHON="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${VIRTUAL_ENV:-}" ]; then PYTHON=.venv/bin/python; fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
# a cluster that was already up (a developer's) is used as is and left running
WAS_UP=0
if command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q "is UP"; then WAS_UP=1; fi
trap '[ "$WAS_UP" = 1 ] || $SUDO bash slurm/local/down.sh --purge' EXIT
$SUDO bash slurm/local/up.sh

# the jobs run as root in this cwd with this environment (sbatch --export=ALL): bench is importable from here
"$PYTHON" -m pytest -m slurm -q -p no:cacheprovider "$@"
