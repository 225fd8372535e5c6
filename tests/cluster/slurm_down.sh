#!/usr/bin/env bash
# Stops the one-node SLURM cluster that tests/cluster/slurm_up.sh DIR started: slurmd, slurmctld,
# and munged if slurm_up.sh started it. Jobs still running are cancelled first. Idempotent.
set -uo pipefail

DIR=${1:-/tmp/romflow-slurm}
[ -d "$DIR" ] || exit 0

if [ -f "$DIR/slurm.conf" ] && [ -f "$DIR/slurmctld.pid" ]; then
    SLURM_CONF="$DIR/slurm.conf" scancel --full --user "$(id -un)" 2>/dev/null || true
fi

stop() {  # stop the daemon whose pid is in file $1 (TERM, then KILL after 10 s)
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

stop "$DIR/slurmd.pid"
stop "$DIR/slurmctld.pid"
# The configless cache link slurmd made, if it points at this cluster.
case "$(readlink /run/slurm/conf 2>/dev/null)" in "$DIR"/*) rm -f /run/slurm/conf ;; esac
if [ -f "$DIR/munged.started" ]; then
    stop /run/munge/munged.pid
    rm -f "$DIR/munged.started"
fi
echo "slurm_down: stopped the cluster of $DIR" >&2
