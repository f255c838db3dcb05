#!/usr/bin/env bash
# Start a single-node SLURM cluster on this host: munged + slurmctld + slurmd.
#
# The node is this machine (its real CPUs and memory) with two fake GPUs declared as GRES,
# enough to run the pipeline's GPU rules through the real scheduler on a CPU-only machine:
# `srun --gpus=1 env` shows CUDA_VISIBLE_DEVICES. No accounting database runs, so finished
# jobs stay visible to `squeue` for MinJobAge seconds (what `--slurm-status-command squeue` needs).
#
# Usage (as root): bash tests/slurm/start.sh [STATE_DIR]     (default /tmp/pasero-slurm)
# Idempotent: a cluster that is already up is left running. Stop it with tests/slurm/stop.sh.
# The configuration lives in STATE_DIR/etc; /etc/slurm/{slurm,gres,cgroup}.conf link to it so
# that every SLURM command (also those that jobs run) finds it without SLURM_CONF.
set -euo pipefail

STATE=${1:-${PASERO_SLURM_STATE:-/tmp/pasero-slurm}}
MARKER="# pasero test cluster"
ETC=$STATE/etc
export SLURM_CONF=$ETC/slurm.conf

die() { echo "start.sh: error: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "starting SLURM daemons needs root (run: sudo bash $0)"
for cmd in slurmctld slurmd munged scontrol sinfo; do
    command -v "$cmd" >/dev/null || [ -x "/usr/sbin/$cmd" ] \
        || die "$cmd not found; install SLURM first: bash $(dirname "$0")/install.sh"
done
export PATH=$PATH:/usr/sbin

node_state() { timeout 10 sinfo -h -N -o %T 2>/dev/null | head -n1; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND... : poll COMMAND until it succeeds
    local limit=$1 what=$2; shift 2
    for _ in $(seq $((limit * 5))); do
        "$@" && return 0
        sleep 0.2
    done
    die "$what did not come up within ${limit}s; see $STATE/log/"
}

# --- already running? ----------------------------------------------------------------------
# (Without a configuration file, SLURM commands wait a minute before failing: check it first.)
if [ -f "$ETC/slurm.conf" ] && [ -f "$STATE/slurmd.pid" ] && kill -0 "$(cat "$STATE/slurmd.pid")" 2>/dev/null \
        && timeout 10 scontrol ping 2>/dev/null | grep -q UP; then
    case "$(node_state)" in
        idle*|mixed*|alloc*|completing*) echo "start.sh: cluster already up ($STATE)"; exit 0 ;;
    esac
fi

# --- configuration -------------------------------------------------------------------------
mkdir -p "$ETC" "$STATE/ctld" "$STATE/spool" "$STATE/log"
for f in slurm.conf gres.conf cgroup.conf; do
    link=/etc/slurm/$f
    if [ -e "$link" ] && ! grep -q "^$MARKER" "$link" 2>/dev/null; then
        die "$link exists and is not from this script; stop that cluster or remove it first"
    fi
done

host=$(hostname -s)
# The node's hardware line as slurmd itself detects it (CPUs, sockets, cores, threads, memory).
hardware=$(slurmd -C | head -n1 | sed -e "s/^NodeName=[^ ]* //" -e 's/ UpTime=.*//')
cpus=$(echo "$hardware" | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')

# Fake GPU devices. slurmd only sets CUDA_VISIBLE_DEVICES for GRES files that are character
# devices: make them with NVIDIA's major number where mknod is allowed, else link to harmless
# existing ones (unprivileged containers).
fallback=(/dev/null /dev/zero)
for i in 0 1; do
    dev=/dev/fake_gpu$i
    if [ ! -c "$dev" ]; then
        rm -f "$dev"
        mknod "$dev" c 195 "$i" 2>/dev/null || ln -s "${fallback[$i]}" "$dev"
    fi
done

cat > "$ETC/slurm.conf" <<EOF
$MARKER (tests/slurm/start.sh); state in $STATE
ClusterName=pasero
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Containers often lack systemd and a writable cgroup tree: track processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Look at the queue every 2 s (a requeued job becomes eligible while nothing else happens).
SchedulerParameters=sched_interval=2,bf_interval=2
GresTypes=gpu
# Keep finished jobs in slurmctld's memory for an hour: with no accounting database,
# squeue --states=all is the only way to see how a job ended.
MinJobAge=3600
JobRequeue=1
ReturnToService=2
SlurmdParameters=config_overrides
# Short credential lifetime: SLURM holds a requeued job for this long before it may start again.
AuthInfo=cred_expire=5
KillWait=10
InactiveLimit=0
SlurmdTimeout=300
NodeName=$host NodeAddr=127.0.0.1 $hardware Gres=gpu:fake:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

cat > "$ETC/gres.conf" <<EOF
$MARKER (tests/slurm/start.sh)
AutoDetect=off
NodeName=$host Name=gpu Type=fake File=/dev/fake_gpu[0-1]
EOF

cat > "$ETC/cgroup.conf" <<EOF
$MARKER (tests/slurm/start.sh)
# No cgroup plugin is configured in slurm.conf; this file only keeps slurmd from guessing.
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

mkdir -p /etc/slurm
for f in slurm.conf gres.conf cgroup.conf; do
    ln -sfn "$ETC/$f" "/etc/slurm/$f"
done

# --- munge ---------------------------------------------------------------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
    chmod 0400 /etc/munge/munge.key
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --force
    touch "$STATE/munged.started"
    wait_for 20 munged sh -c 'munge -n | unmunge >/dev/null 2>&1'
fi

# --- slurmctld + slurmd --------------------------------------------------------------------
stop_pid() {  # a daemon from an earlier start with another configuration
    local pidfile=$1
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}
stop_pid "$STATE/slurmd.pid"
stop_pid "$STATE/slurmctld.pid"

# -i: start even if saved state does not match the (re-written) configuration.
slurmctld -i -f "$ETC/slurm.conf"
wait_for 30 slurmctld sh -c 'timeout 5 scontrol ping 2>/dev/null | grep -q UP'
slurmd -f "$ETC/slurm.conf"

node_up() {
    case "$(node_state)" in
        idle*|mixed*|alloc*) return 0 ;;
        down*|drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true; return 1 ;;
        *) return 1 ;;
    esac
}
wait_for 60 "node $host" node_up
echo "start.sh: SLURM cluster up: node $host, $cpus CPUs, 2 fake GPUs (gres gpu:fake:2), partition debug, state $STATE"
