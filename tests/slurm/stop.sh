#!/usr/bin/env bash
# Stop the test cluster that tests/slurm/start.sh started: slurmd, slurmctld, then munged.
#
# Usage (as root): bash tests/slurm/stop.sh [STATE_DIR] [--purge]
#   --purge also removes STATE_DIR (saved jobs, logs, configuration) and the /etc/slurm links.
# Only the daemons start.sh started are stopped: slurmd/slurmctld by their pid files in STATE_DIR,
# munged only if start.sh had to start it (a munged that was already running is left alone).
set -euo pipefail

STATE=${PASERO_SLURM_STATE:-/tmp/pasero-slurm}
purge=0
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1 ;;
        *) STATE=$arg ;;
    esac
done

stop_pid() {  # stop_pid PIDFILE NAME: SIGTERM, wait up to 10 s
    local pidfile=$1 name=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && echo "stop.sh: warning: $name ($pid) still running" >&2
    fi
    rm -f "$pidfile"
}

stop_pid "$STATE/slurmd.pid" slurmd
stop_pid "$STATE/slurmctld.pid" slurmctld
if [ -f "$STATE/munged.started" ]; then
    stop_pid /run/munge/munged.pid munged
    rm -f "$STATE/munged.started"
fi

if [ "$purge" = 1 ]; then
    for f in slurm.conf gres.conf cgroup.conf; do
        link=/etc/slurm/$f
        if [ -L "$link" ] && [ "$(readlink "$link")" = "$STATE/etc/$f" ]; then rm -f "$link"; fi
    done
    rm -rf "$STATE"
fi
echo "stop.sh: SLURM test cluster stopped ($STATE)"
