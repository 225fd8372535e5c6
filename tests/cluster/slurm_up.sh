#!/usr/bin/env bash
# A real one-node SLURM cluster on this host, for the cluster tests and benchmarks.
#
#   tests/cluster/slurm_up.sh DIR     installs slurm-wlm and munge when missing (Debian, as root),
#                                     writes DIR/slurm.conf, starts munged, slurmctld and slurmd,
#                                     and waits until the node is idle
#   export SLURM_CONF=DIR/slurm.conf  then sbatch/squeue/srun (and snakemake --profile ...) use it
#   tests/cluster/slurm_down.sh DIR   stops what this script started
#
# Idempotent: a second call on the same DIR stops the old daemons and starts fresh ones. Everything
# (state, spool, logs, pid files) lives under DIR; the ports are free ones picked at start-up, so a
# site's own SLURM (if any) is not touched. No accounting: job status comes from squeue, which keeps
# finished jobs for MinJobAge seconds (the executor plugin needs that, see docs/cluster.md).
set -euo pipefail

DIR=$(mkdir -p "${1:-/tmp/romflow-slurm}" && cd "${1:-/tmp/romflow-slurm}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
log() { echo "slurm_up: $*" >&2; }
fail() { echo "slurm_up: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (slurmd and munged need it); got uid $(id -u)"

# 1. Packages (Debian's slurm-wlm 22.05 and munge install in seconds). Slurm's PMIx plugin, which
#    srun needs to start Open MPI ranks, loads libpmix.so: only libpmix-dev ships that name.
PMIX_LIB=/usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null || [ ! -e "$PMIX_LIB" ]; then
    command -v apt-get >/dev/null || fail "slurm-wlm/munge/libpmix-dev are missing and apt-get is not available"
    log "installing slurm-wlm, munge and libpmix-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$DIR/apt.log" 2>&1 || fail "apt-get update failed, see $DIR/apt.log"
    apt-get install -y -qq slurm-wlm munge libpmix-dev >>"$DIR/apt.log" 2>&1 \
        || fail "apt-get install failed, see $DIR/apt.log"
fi

# 2. Old daemons of this DIR go first (idempotent restarts).
"$HERE/slurm_down.sh" "$DIR" >/dev/null 2>&1 || true
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"

# 3. munge: reuse a running munged, otherwise start one as the munge user.
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null || \
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start (see /var/log/munge/munged.log)"
    echo started >"$DIR/munged.started"
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n </dev/null | unmunge >/dev/null 2>&1 || fail "munge credentials do not verify"
fi

# 4. slurm.conf for this host: real CPU and memory figures from slurmd -C.
HOST=$(hostname -s)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=${ROMFLOW_SLURMCTLD_PORT:-$(free_port)}
SLURMD_PORT=${ROMFLOW_SLURMD_PORT:-$(free_port)}
NODE=$(slurmd -C | head -n1 | sed -E 's/ UpTime=.*//')
case "$NODE" in NodeName=*) ;; *) fail "slurmd -C did not describe this host: $NODE" ;; esac
MPI=none
ls /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix*.so >/dev/null 2>&1 && [ -e "$PMIX_LIB" ] && MPI=pmix
cat >"$DIR/slurm.conf" <<EOF
# Written by tests/cluster/slurm_up.sh: one node (this host), no accounting, daemons as root.
ClusterName=romflow
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# slurmd fetches this file from slurmctld and links it at /run/slurm/conf, where srun inside jobs
# finds it (the executor plugin's job steps drop SLURM_* variables, SLURM_CONF included).
SlurmctldParameters=enable_configless
# No cgroups needed: processes are tracked by parent pid, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# CPUs and memory are consumable, so jobs share the node as their requests allow.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
# srun launches the MPI ranks of simulate jobs (Open MPI 4 speaks PMIx).
MpiDefault=$MPI
# squeue must still see finished jobs when the executor plugin polls (no sacct without accounting).
MinJobAge=3600
ReturnToService=2
InactiveLimit=0
KillWait=5
$NODE State=UNKNOWN NodeAddr=127.0.0.1
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# 5. Daemons (both fork into the background and write their pid files).
export SLURM_CONF="$DIR/slurm.conf"
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start, see $DIR/log/slurmctld.log"
for _ in $(seq 40); do scontrol ping >/dev/null 2>&1 && break; sleep 0.25; done
slurmd --conf-server "127.0.0.1:$CTLD_PORT" || fail "slurmd did not start, see $DIR/log/slurmd.log"

# 6. Wait until the node is idle.
state=""
for _ in $(seq 120); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.25
done
[ "$state" = idle ] || fail "node $HOST is '${state:-unreachable}', not idle after 30 s; see $DIR/log/"
log "node $HOST idle ($NODE); export SLURM_CONF=$SLURM_CONF"
echo "$SLURM_CONF"
