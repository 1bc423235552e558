#!/usr/bin/env bash
# slurm/local/down.sh — tear down the single-node cluster made by slurm/local/up.sh.
#
#   bash slurm/local/down.sh          cancel all jobs (only when up.sh started slurmctld), stop the
#                                     daemons that up.sh started (listed in /run/slurm-ci.started)
#   bash slurm/local/down.sh --all    also stop munged/mariadbd/slurm* daemons it did not start
#   bash slurm/local/down.sh --purge  additionally drop the accounting DB and delete
#                                     /var/spool/slurm-ci and /var/log/slurm-ci
# Idempotent: with nothing running it does nothing. Packages stay installed.
# Processes are found through their pid files and ended by pid (TERM, then KILL).
set -uo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ALL=0; PURGE=0
for a in "$@"; do case "$a" in --all) ALL=1 ;; --purge) PURGE=1 ;; *) echo "unknown arg $a" >&2; exit 2 ;; esac; done
[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
STATE_DIR=/var/spool/slurm-ci
LOG_DIR=/var/log/slurm-ci
STARTED_FILE=/run/slurm-ci.started
log() { echo "[slurm/local/down] $*"; }

alive() {
  local pidf=$1 comm=$2 pid
  [ -s "$pidf" ] || return 1
  pid=$(cat "$pidf" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}
stop_pid() {
  local pidf=$1 comm=$2 pid i
  alive "$pidf" "$comm" || return 0
  pid=$(cat "$pidf")
  log "stopping $comm (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do alive "$pidf" "$comm" || return 0; sleep 0.1; done
  log "$comm did not exit after 15 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}
should_stop() { [ "$ALL" = 1 ] || grep -qx "$1" "$STARTED_FILE" 2>/dev/null; }

# 1. cancel every job while the controller is still up, and let the steps finish
if alive /run/slurmctld.pid slurmctld && should_stop slurmctld; then
  for u in $(squeue -h -o %u 2>/dev/null | sort -u); do scancel -u "$u" 2>/dev/null || true; done
  for i in $(seq 1 100); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
fi

# 2. daemons, in reverse start order
should_stop slurmd    && stop_pid /run/slurmd.pid slurmd
should_stop slurmctld && stop_pid /run/slurmctld.pid slurmctld
should_stop slurmdbd  && stop_pid /run/slurmdbd.pid slurmdbd
if [ "$PURGE" = 1 ] && command -v mariadb >/dev/null && mariadb-admin ping >/dev/null 2>&1; then
  mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db;" && log "dropped slurm_acct_db"
fi
should_stop mariadbd  && stop_pid /run/mysqld/mysqld.pid mariadbd
should_stop munged    && stop_pid /run/munge/munged.pid munged

# 3. job steps orphaned by a slurmd we stopped (slurmstepd outlives slurmd): end them by pid
should_stop slurmd && for d in /proc/[0-9]*; do
  [ "$(cat "$d/comm" 2>/dev/null)" = slurmstepd ] || continue
  pid=${d#/proc/}; log "killing orphan slurmstepd pid $pid"; kill -KILL "$pid" 2>/dev/null || true
done

rm -f "$STARTED_FILE"
if [ "$PURGE" = 1 ]; then
  rm -rf "$STATE_DIR" "$LOG_DIR"
  log "purged $STATE_DIR and $LOG_DIR"
fi
log "done"
exit 0
