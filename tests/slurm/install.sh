#!/usr/bin/env bash
# Install a single-node SLURM cluster's packages (Debian's slurm-wlm + munge) for the SLURM tests.
#
# Idempotent: does nothing when the daemons and client commands are already there.
# Needs root; apt is the only network access it uses. Usage: bash tests/slurm/install.sh
set -euo pipefail

need=(slurmctld slurmd sbatch squeue scontrol munged)
missing=0
for cmd in "${need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing=1
done
[ "$missing" = 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: error: installing slurm-wlm and munge needs root (run: sudo bash $0)" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive
packages=(slurm-wlm slurm-client munge)
# `apt-get update` only when the package lists do not know the packages yet (fresh image).
if ! apt-cache show "${packages[@]}" >/dev/null 2>&1; then
    apt-get update -qq
fi
# (Stale lists name versions the mirror no longer has: refresh them and try once more.)
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }
echo "install.sh: installed ${packages[*]} ($(dpkg-query -W -f='${Version}' slurm-wlm))"
