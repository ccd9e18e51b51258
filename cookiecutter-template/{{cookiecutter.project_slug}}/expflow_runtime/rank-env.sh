#!/bin/bash
# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
# LAUNCHER=srun runs this once per task (one per GPU): it sets the variables that
# torch.distributed's env:// initialisation and most frameworks read, from SLURM's
# own, then runs the stage's command. MASTER_ADDR and MASTER_PORT come from the
# batch script (job-lib.sh).
set -euo pipefail

export RANK="${SLURM_PROCID:-0}"
export LOCAL_RANK="${SLURM_LOCALID:-0}"
export WORLD_SIZE="${SLURM_NTASKS:-1}"
export LOCAL_WORLD_SIZE="${SLURM_NTASKS_PER_NODE:-1}"
export NODE_RANK="${SLURM_NODEID:-0}"
exec "$@"
