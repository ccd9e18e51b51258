# shellcheck shell=bash
# Kept by `expflow update` for jobs submitted before the update: their copy of
# train.sbatch or eval.sbatch still sources scripts/job-lib.sh, and the job
# library now lives in expflow_runtime/. Delete this file when none of those
# jobs is queued or running any more (squeue --me).
# shellcheck source=/dev/null
source "$(dirname "${BASH_SOURCE[0]}")/../expflow_runtime/job-lib.sh"
