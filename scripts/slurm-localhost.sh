#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost, for tests of the SLURM path on one machine
# (sbatch, squeue, scancel, dask-jobqueue). Run as root on Debian; installs slurm-wlm and munge
# with apt-get if they are missing. Everything (config, state, spool, logs, pid files) lives in
# STATE_DIR; only munged is system-wide (/etc/munge/munge.key, /run/munge).
#
#   bash scripts/slurm-localhost.sh start  STATE_DIR   # last stdout line: export SLURM_CONF=...
#   bash scripts/slurm-localhost.sh status STATE_DIR
#   bash scripts/slurm-localhost.sh stop   STATE_DIR   # cancels jobs, stops slurmd/slurmctld
#
#   eval "$(bash scripts/slurm-localhost.sh start /tmp/slurm | tail -n 1)"
#
# Ports: SLURMCTLD_PORT/SLURMD_PORT, else the first free pair from 6817/6818 up.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

usage() { echo "usage: $0 start|stop|status STATE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
[ "$cmd" = start ] && mkdir -p "$2"
[ -d "$2" ] || { [ "$cmd" = stop ] && exit 0; echo "no such directory: $2" >&2; exit 1; }
dir=$(cd "$2" && pwd)
case "$dir" in *[[:space:]]*) echo "STATE_DIR must not contain whitespace: $dir" >&2; exit 2 ;; esac
conf=$dir/slurm.conf
export SLURM_CONF=$conf
node=$(uname -n)
node=${node%%.*}  # the short hostname: the name slurmd gives itself, so NodeName must be it

# a zombie counts as dead (where PID 1 is slow to reap, killed daemons linger as zombies)
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; }

# pid of daemon $1 (slurmctld|slurmd) started from this dir, if it is still alive
daemon_pid() {
  local pid
  pid=$(cat "$dir/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && alive "$pid" && echo "$pid"
}

show_logs() {
  local f
  for f in "$dir"/log/*; do  # *.out: what the daemons wrote before opening their logs
    if [ -s "$f" ]; then
      echo "==> $f <=="
      grep -v -e pmix -e 'MPI: Cannot' "$f" | tail -n 25 || true  # drop the harmless PMIx noise
    fi
  done >&2
}

# start failed: say why, show the logs, stop what did start
fail() {
  echo "$1" >&2
  show_logs
  stop_daemon slurmd
  stop_daemon slurmctld
  exit 1
}

port_free() { ! (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install_if_missing() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null &&
    command -v sbatch >/dev/null && return 0
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge)
  "${apt[@]}" || { apt-get update -q && "${apt[@]}"; }
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  local key=/etc/munge/munge.key
  if [ ! -s "$key" ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    chown munge:munge "$key" 2>/dev/null || true
    chmod 400 "$key"
  fi
  munge_works && return 0
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 755 /run/munge
  runuser -u munge -- munged </dev/null >/dev/null 2>&1 || munged --force </dev/null >/dev/null 2>&1 || true
  local i
  for i in $(seq 20); do munge_works && return 0; sleep 0.5; done
  echo "munged did not start" >&2
  tail -n 20 /var/log/munge/munged.log >&2 2>/dev/null || true
  return 1
}

write_conf() {
  local hw cpus mem ctld_port slurmd_port
  hw=$(slurmd -C | head -n 1)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$((mem * 95 / 100))  # a little under what slurmd reports, or the node gets drained
  ctld_port=${SLURMCTLD_PORT:-6817}
  if [ -z "${SLURMCTLD_PORT:-}" ]; then
    while ! port_free "$ctld_port"; do ctld_port=$((ctld_port + 2)); done
  fi
  slurmd_port=${SLURMD_PORT:-$((ctld_port + 1))}
  if [ -z "${SLURMD_PORT:-}" ]; then
    while ! port_free "$slurmd_port" || [ "$slurmd_port" = "$ctld_port" ]; do
      slurmd_port=$((slurmd_port + 1))
    done
  fi
  local p
  for p in "$ctld_port" "$slurmd_port"; do
    port_free "$p" || { echo "port $p is in use (set SLURMCTLD_PORT/SLURMD_PORT)" >&2; exit 1; }
  done
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  # Addresses are 127.0.0.1, so that the hostname need not resolve. Only CPUs= is given (no
  # sockets/cores/threads), so that with CR_CPU_Memory every CPU (hyperthread) takes a 1-CPU
  # job; DefMemPerCPU keeps a job without --mem from claiming the whole node's memory, which
  # would run jobs one at a time.
  cat >"$conf" <<EOF
# written by scripts/slurm-localhost.sh
ClusterName=localhost
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem / cpus))
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
KillWait=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

node_state() { sinfo -h -N -o %T 2>/dev/null | head -n 1; }

cancel_jobs() {
  daemon_pid slurmctld >/dev/null || return 0
  local jobs i
  jobs=$(squeue -h -o %A 2>/dev/null || true)
  [ -n "$jobs" ] || return 0
  # shellcheck disable=SC2086
  scancel $jobs 2>/dev/null || true
  for i in $(seq 40); do
    [ -z "$(squeue -h -o %A 2>/dev/null)" ] && return 0
    sleep 0.5
  done
}

stop_daemon() {
  local pid i
  pid=$(daemon_pid "$1") || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 40); do
    alive "$pid" || return 0
    sleep 0.25
  done
  kill -9 "$pid" 2>/dev/null || true
}

do_stop() {
  [ -f "$conf" ] || return 0
  cancel_jobs
  stop_daemon slurmd
  stop_daemon slurmctld
  rm -f "$dir/slurmd.pid" "$dir/slurmctld.pid"
}

do_start() {
  local t0=$SECONDS state="" resumed=0
  install_if_missing
  start_munge
  if daemon_pid slurmctld >/dev/null && daemon_pid slurmd >/dev/null &&
    [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]; then
    echo "already running from $dir"
    echo "export SLURM_CONF=$conf"
    return 0
  fi
  do_stop
  write_conf
  slurmctld -f "$conf" </dev/null >>"$dir/log/slurmctld.out" 2>&1 || fail "slurmctld failed to start"
  slurmd -f "$conf" -N "$node" </dev/null >>"$dir/log/slurmd.out" 2>&1 || fail "slurmd failed to start"
  local t1=$SECONDS
  while [ $((SECONDS - t1)) -lt 60 ]; do
    state=$(node_state)
    case "$state" in
      idle) daemon_pid slurmctld >/dev/null && daemon_pid slurmd >/dev/null && break ;;
      drain* | drained)  # e.g. left over from an unclean stop: resume it once
        [ "$resumed" = 1 ] || scontrol update NodeName="$node" State=RESUME 2>/dev/null || true
        resumed=1 ;;
    esac
    if [ $((SECONDS - t1)) -ge 5 ]; then  # give them time to fork and write their pid files
      daemon_pid slurmctld >/dev/null || fail "slurmctld is not running"
      daemon_pid slurmd >/dev/null || fail "slurmd is not running"
    fi
    sleep 0.5
  done
  if [ "$state" != idle ]; then
    sinfo -R >&2 || true
    fail "node not idle after 60 s (state: ${state:-none})"
  fi
  # A freshly started slurmctld schedules nothing for its first ~3 s, so a node that is idle
  # does not yet mean jobs start: run one tiny job through, which also proves they can.
  local job jstate=""
  job=$(sbatch --parsable -J slurm-localhost-probe -c 1 -t 1 -D "$dir" -o /dev/null --wrap true) ||
    fail "sbatch failed"
  while [ $((SECONDS - t1)) -lt 60 ]; do
    jstate=$(squeue -h -t all -j "$job" -o %T 2>/dev/null || true)
    case "$jstate" in
      COMPLETED) break ;;
      PENDING | CONFIGURING | RUNNING | COMPLETING | "") sleep 0.5 ;;
      *) break ;;
    esac
  done
  if [ "$jstate" != COMPLETED ]; then
    scancel "$job" 2>/dev/null || true
    fail "probe job $job did not complete in 60 s (state: ${jstate:-none})"
  fi
  echo "slurm up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %D %T %C')"
  echo "export SLURM_CONF=$conf"
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  status)
    sinfo || true
    squeue || true ;;
  *) usage ;;
esac
