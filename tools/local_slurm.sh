#!/usr/bin/env bash
# A single-node Slurm on this machine, for regbench's Slurm tests and for trying
# `--executor slurm` without a cluster. Everything it starts and writes lives in one folder.
#
#   tools/local_slurm.sh start [DIR]   # prints `export SLURM_CONF=DIR/slurm.conf`
#   tools/local_slurm.sh stop  [DIR]   # stops what start started; removes nothing else
#   tools/local_slurm.sh status [DIR]
#
# DIR defaults to $REGBENCH_SLURM_DIR, else /tmp/regbench-slurm. Needs Debian's slurmctld,
# slurmd, slurm-client and munge (apt-get install slurmctld slurmd slurm-client munge); its own
# munged runs with its own key and socket in DIR, so a munge or Slurm already on the machine is
# left alone. The node offers this machine's cores and memory in one partition, `debug`.
set -euo pipefail

action=${1:-}
dir=${2:-${REGBENCH_SLURM_DIR:-/tmp/regbench-slurm}}

say() { echo "local_slurm: $*" >&2; }

need() {
    local missing=()
    for tool in munged mungekey slurmctld slurmd sbatch sinfo; do
        command -v "$tool" > /dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "missing ${missing[*]}: apt-get install slurmctld slurmd slurm-client munge"
        exit 3
    fi
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2> /dev/null; }

stop() {
    for daemon in slurmd slurmctld munged; do
        if alive "$dir/$daemon.pid"; then
            kill "$(cat "$dir/$daemon.pid")" 2> /dev/null || true
            for _ in $(seq 50); do alive "$dir/$daemon.pid" || break; sleep 0.1; done
            alive "$dir/$daemon.pid" && kill -9 "$(cat "$dir/$daemon.pid")" 2> /dev/null || true
        fi
        rm -f "$dir/$daemon.pid"
    done
}

start() {
    need
    export PATH="$PATH:/usr/sbin"
    if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid"; then
        echo "export SLURM_CONF=$dir/slurm.conf"
        return
    fi
    stop
    mkdir -p "$dir/state" "$dir/spool"
    chmod 700 "$dir"
    [ -f "$dir/munge.key" ] || mungekey --create --keyfile="$dir/munge.key" > /dev/null
    chmod 400 "$dir/munge.key"
    munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" \
        --seed-file="$dir/munged.seed" 2>> "$dir/munged.log"
    local host cpus memory user
    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
    user=$(id -un)
    cat > "$dir/slurm.conf" << EOF
# written by regbench's tools/local_slurm.sh
ClusterName=regbench-local
SlurmctldHost=$host
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=${REGBENCH_SLURM_PORT:-16817}
SlurmdPort=$(( ${REGBENCH_SLURM_PORT:-16817} + 1 ))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$dir/slurm.conf"
    slurmd -f "$dir/slurm.conf"
    for _ in $(seq 100); do
        if sinfo -h -o %T 2> /dev/null | grep -q -E '^(idle|mixed|allocated)'; then
            echo "export SLURM_CONF=$dir/slurm.conf"
            return
        fi
        sleep 0.2
    done
    say "the node did not come up; logs in $dir (slurmctld.log, slurmd.log, munged.log)"
    tail -n 5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 2> /dev/null || true
    stop
    exit 1
}

case "$action" in
    start) start ;;
    stop) stop ;;
    status)
        if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid"; then
            SLURM_CONF="$dir/slurm.conf" sinfo
        else
            say "not running (in $dir)"; exit 1
        fi ;;
    *) echo "usage: $0 start|stop|status [DIR]" >&2; exit 2 ;;
esac
