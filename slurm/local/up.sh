#!/usr/bin/env bash
# slurm/local/up.sh — bring up a REAL single-node SLURM cluster (with accounting) on localhost,
# for CI, laptops and developing the harness's `launcher.name=slurm launcher.profile=local`.
#
#   bash slurm/local/up.sh        # ~30 s on a fresh Debian/Ubuntu machine, ~1 s when already up
#   bash slurm/local/down.sh      # stops only what this script started (see down.sh)
#
# Based on the measured recipe in the project notes (slurm 22.05 on Debian 12). Settings kept on purpose:
# AuthInfo=cred_expire=10 and sched_interval=2 (a requeued job restarts in ~15 s instead of ~3 min),
# preempt_send_user_signal (a preempted job gets submitit's USR2 first, so it checkpoints and requeues),
# partitions `debug` (default, preemptable) and `high` (preempts `debug` jobs).
#
# Idempotent: safe to call repeatedly; installs what is missing, (re)writes the
# config, starts only the daemons that are not already running, and waits until
# the node is schedulable. Must run as root (CI runs as root). No systemd needed:
# every daemon is started directly and tracked by its pid file.
#
# Tested on Debian 12 (slurm 22.05.8, munge 0.5.15, MariaDB 10.11), no cgroups.
#
# Knobs (environment variables):
#   SLURM_CI_ACCOUNTING=1   1: slurmdbd + MariaDB so `sacct` works (submitit reads
#                           job states with sacct; without it a cancelled/killed job
#                           makes job.result() block forever). 0: no accounting.
#   SLURM_CI_CPUS=<nproc>   CPUs the node advertises. > real cores oversubscribes
#                           (adds SlurmdParameters=config_overrides).
#   SLURM_CI_MEM_MB=<90% of RAM>  RealMemory of the node.
#   SLURM_CI_INSTALL=1      0: never call apt-get (fail if packages are missing).
#   SLURM_CI_SMOKE=1        0: skip the final `srun true` smoke test.
#   SLURM_CI_TIMEOUT=60     seconds to wait for each daemon / the node.
#
# Layout: /etc/slurm/slurm.conf (+ slurmdbd.conf), state in /var/spool/slurm-ci,
# logs in /var/log/slurm-ci, pid files in /run. Partitions: `debug` (default,
# preemptable, PriorityTier=1) and `high` (PriorityTier=10, preempts `debug` jobs
# with REQUEUE and sends them their --signal first, i.e. submitit's USR2).
set -euo pipefail

ACCOUNTING=${SLURM_CI_ACCOUNTING:-1}
INSTALL=${SLURM_CI_INSTALL:-1}
SMOKE=${SLURM_CI_SMOKE:-1}
TIMEOUT=${SLURM_CI_TIMEOUT:-60}
CONF_DIR=/etc/slurm
STATE_DIR=/var/spool/slurm-ci
LOG_DIR=/var/log/slurm-ci
CLUSTER=ci
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=slurmci          # local socket-only MariaDB, test cluster: not a secret
NODE=localhost
STARTED_FILE=/run/slurm-ci.started   # daemons this script started; read by down.sh

T_START=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T_START) / 1000000 )); printf '[slurm/local/up %3d.%03ds] %s\n' $((ms/1000)) $((ms%1000)) "$*"; }
die() { log "ERROR: $*"; for f in "$LOG_DIR"/*.log; do [ -f "$f" ] && { echo "--- tail $f"; tail -n 20 "$f"; }; done; exit 1; }

[ "$(id -u)" = 0 ] || { echo "slurm/local/up.sh must run as root" >&2; exit 1; }
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

# --- helpers -----------------------------------------------------------------
# alive PIDFILE COMM: pid file names a live (non-zombie) process whose comm is COMM
alive() {
  local pidf=$1 comm=$2 pid
  [ -s "$pidf" ] || return 1
  pid=$(cat "$pidf" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}
wait_for() {  # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}
started() { echo "$1" >> "$STARTED_FILE"; }
stop_pid() {  # stop_pid PIDFILE COMM  (TERM, wait, KILL)
  local pidf=$1 comm=$2 pid i
  alive "$pidf" "$comm" || return 0
  pid=$(cat "$pidf")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do alive "$pidf" "$comm" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

# --- 1. packages ---------------------------------------------------------------
PKGS=(slurmctld slurmd slurm-client munge)
BINS=(slurmctld slurmd sbatch munged)
if [ "$ACCOUNTING" = 1 ]; then PKGS+=(slurmdbd mariadb-server); BINS+=(slurmdbd mariadbd); fi
missing=0
for b in "${BINS[@]}"; do command -v "$b" >/dev/null 2>&1 || missing=1; done
if [ "$missing" = 1 ]; then
  [ "$INSTALL" = 1 ] || die "slurm packages missing and SLURM_CI_INSTALL=0"
  log "installing ${PKGS[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Postinst scripts try to start the services; in containers policy-rc.d refuses
  # (harmless), on a systemd host they start with no slurm.conf and are restarted below.
  apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
  log "packages installed"
fi

# --- 2. munge ------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  install -d -o munge -g munge -m 0700 /etc/munge
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! alive /run/munge/munged.pid munged; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged   # as the munge user, like the Debian unit; daemonizes itself
  started munged
fi
wait_for "munge" bash -c 'munge -n | unmunge'

# --- 3. config -----------------------------------------------------------------
NPROC=$(nproc)
CPUS=${SLURM_CI_CPUS:-$NPROC}
MEM_MB=${SLURM_CI_MEM_MB:-$(awk '/^MemTotal:/ {printf "%d", $2/1024*0.9}' /proc/meminfo)}
VER=$(slurmctld -V | awk '{print $2}')          # e.g. 22.05.8
VMAJ=$(echo "$VER" | cut -d. -f1); VMIN=$(echo "$VER" | cut -d. -f2)
if [ "$VMAJ" -gt 23 ] || { [ "$VMAJ" -eq 23 ] && [ "$VMIN" -ge 2 ]; }; then
  PREEMPT_SIGNAL="PreemptParameters=send_user_signal"        # slurm >= 23.02
else
  PREEMPT_SIGNAL="SlurmctldParameters=preempt_send_user_signal"  # slurm 22.05
fi
if [ "$ACCOUNTING" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
OVERRIDES=""
[ "$CPUS" -gt "$NPROC" ] && OVERRIDES="SlurmdParameters=config_overrides"

NEW_CONF=$(cat <<EOF
# Generated by slurm/local/up.sh (contrastive-bench) — single-node cluster on localhost.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
# cred_expire also sets how long a requeued job waits before it may start again
# (default 120 s): keep requeue/preemption tests fast.
AuthInfo=cred_expire=10
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
MailProg=/bin/true
MpiDefault=none
# no cgroups: plain /proc based process tracking
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$ACCT
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# schedule on submit and re-scan every 2 s (default 60/30 s) so requeued jobs restart fast
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=2
EnforcePartLimits=ALL
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
$PREEMPT_SIGNAL
$OVERRIDES
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=20
PartitionName=high Nodes=$NODE MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
)
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$STATE_DIR/ctld" "$STATE_DIR/d"
CONF_CHANGED=0
if [ ! -f "$CONF_DIR/slurm.conf" ] || [ "$(cat "$CONF_DIR/slurm.conf")" != "$NEW_CONF" ]; then
  printf '%s\n' "$NEW_CONF" > "$CONF_DIR/slurm.conf"; chmod 0644 "$CONF_DIR/slurm.conf"
  CONF_CHANGED=1
  log "wrote $CONF_DIR/slurm.conf (slurm $VER, CPUs=$CPUS, RealMemory=$MEM_MB)"
fi
# cgroup.conf is not read with the plugins above; leave any existing one alone.

# --- 4. accounting: MariaDB + slurmdbd -------------------------------------------
FRESH_STATE=0   # no saved controller state and no controller running
if ! alive /run/slurmctld.pid slurmctld && [ -z "$(ls -A "$STATE_DIR/ctld" 2>/dev/null)" ]; then FRESH_STATE=1; fi
if [ "$ACCOUNTING" = 1 ]; then
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  if [ ! -d /var/lib/mysql/mysql ]; then
    log "initialising MariaDB datadir"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  if ! mariadb-admin ping >/dev/null 2>&1; then
    log "starting mariadbd (unix socket only)"
    setsid /usr/sbin/mariadbd --user=mysql --skip-networking \
      --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
      --pid-file=/run/mysqld/mysqld.pid >"$LOG_DIR/mariadbd.log" 2>&1 < /dev/null &
    wait_for "mariadbd" mariadb-admin ping
    started mariadbd
  fi
  if [ "$FRESH_STATE" = 1 ]; then
    # Job ids restart at 1 with a fresh StateSaveLocation; stale rows with the same
    # ids would make `sacct -j` (and so submitit) report old states.
    mariadb -e "DROP DATABASE IF EXISTS $DB_NAME;"
  fi
  mariadb -e "CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
              GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost'; FLUSH PRIVILEGES;"
  NEW_DBD=$(cat <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
)
  if [ ! -f "$CONF_DIR/slurmdbd.conf" ] || [ "$(cat "$CONF_DIR/slurmdbd.conf")" != "$NEW_DBD" ]; then
    printf '%s\n' "$NEW_DBD" > "$CONF_DIR/slurmdbd.conf"
    stop_pid /run/slurmdbd.pid slurmdbd
  fi
  chown root:root "$CONF_DIR/slurmdbd.conf"; chmod 0600 "$CONF_DIR/slurmdbd.conf"  # slurmdbd insists
  if [ "$FRESH_STATE" = 1 ]; then stop_pid /run/slurmdbd.pid slurmdbd; fi
  if ! alive /run/slurmdbd.pid slurmdbd; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
    started slurmdbd
  fi
  wait_for "slurmdbd" sacctmgr -n -P list cluster
fi

# --- 5. slurmctld + slurmd --------------------------------------------------------
if [ "$CONF_CHANGED" = 1 ]; then
  # plugin/port/auth changes need a restart, not just `scontrol reconfigure`
  stop_pid /run/slurmd.pid slurmd
  stop_pid /run/slurmctld.pid slurmctld
fi
if ! alive /run/slurmctld.pid slurmctld; then
  log "starting slurmctld"
  /usr/sbin/slurmctld            # daemonizes; -D would keep it in the foreground
  started slurmctld
fi
wait_for "slurmctld" scontrol ping
if ! alive /run/slurmd.pid slurmd; then
  log "starting slurmd -N $NODE"
  /usr/sbin/slurmd -N "$NODE"    # -N: node name is 'localhost', not `hostname -s`
  started slurmd
fi
node_ready() { sinfo -h -n "$NODE" -o %T | grep -qE '^(idle|mixed|allocated|completing)$'; }
deadline=$(( $(date +%s) + TIMEOUT ))
until node_ready; do
  st=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
  case "$st" in
    drain*|down*|fail*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || die "node $NODE not ready (state: $st)"
  sleep 0.2
done
log "node $NODE is $(sinfo -h -n "$NODE" -o %T)"
if [ "$ACCOUNTING" = 1 ]; then
  wait_for "cluster '$CLUSTER' registered in slurmdbd" \
    bash -c "sacctmgr -n -P list cluster format=cluster,controlport | grep -q '^$CLUSTER|6817'"
fi

# --- 6. smoke test --------------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
  out=$(cd /tmp && timeout "$TIMEOUT" srun -N1 -n1 -t 1 -J ci-smoke bash -c 'echo "$SLURMD_NODENAME"') \
    || die "srun smoke test failed"
  [ "$out" = "$NODE" ] || die "srun smoke test printed '$out'"
fi
log "SLURM is up: $(sinfo -h -o '%P %a %D %T' | tr '\n' ';') accounting=$ACCOUNTING"
