# shellcheck shell=bash
# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
# Shared by scripts/train.sbatch and scripts/eval.sbatch: sourced, not run.
#
# run_stage STAGE EXP_DIR COMMAND...
#   exports the EXPFLOW_* variables your code reads (README.md, "The job
#   contract"), records the run in EXP_DIR/runs/ (start, end, exit code, node),
#   sets up the environment named in settings.env, then runs COMMAND.
# The same functions run under SLURM and on the local backend (plain bash).

expflow_runtime() {
  python3 -I expflow_runtime/run.py "$@"
}

expflow_record() {
  expflow_runtime job-record "$@"
}

# settings.env is data and never run: Python checks it against its one grammar
# (files.read_settings, the same check every make target makes) and hands over
# NUL-terminated KEY=VALUE records, then END; bash assigns each with printf -v.
# A refused file yields no END, and the job stops before anything runs.
load_settings() {
  local record complete=0
  while IFS= read -r -d '' record; do
    if [[ "${record}" == END ]]; then
      complete=1
    elif [[ "${record}" =~ ^[A-Z][A-Z0-9_]*= ]]; then
      printf -v "${record%%=*}" '%s' "${record#*=}"
    fi
  done < <(expflow_runtime job-settings)
  if ((complete == 0)); then
    echo "expflow: settings.env was refused (see above); nothing was run" >&2
    return 1
  fi
}

# `module` is a shell function that batch shells may not have: load it first.
ensure_module_command() {
  local init
  type module >/dev/null 2>&1 && return 0
  for init in /etc/profile.d/lmod.sh /etc/profile.d/modules.sh /usr/share/lmod/lmod/init/bash; do
    if [[ -r "${init}" ]]; then
      set +u  # site init files use unset variables
      # shellcheck source=/dev/null
      source "${init}"
      set -u
      return 0
    fi
  done
  echo "expflow: ENV_MODULES is set but no 'module' command was found" >&2
  return 1
}

# Conda in a non-interactive shell: source conda.sh instead of relying on `conda init`.
activate_conda() {
  local base="${ENV_CONDA_BASE:-}"
  if [[ -z "${base}" && -n "${CONDA_EXE:-}" ]]; then
    base="$(dirname "$(dirname "${CONDA_EXE}")")"
  fi
  if [[ -z "${base}" || ! -r "${base}/etc/profile.d/conda.sh" ]]; then
    echo "expflow: cannot find conda.sh; set ENV_CONDA_BASE in settings.env" >&2
    return 1
  fi
  set +u
  # shellcheck source=/dev/null
  source "${base}/etc/profile.d/conda.sh"
  conda activate "${ENV_CONDA}"
  set -u
}

setup_environment() {
  local -a modules
  if [[ -n "${ENV_MODULES:-}" ]]; then
    ensure_module_command
    read -r -a modules <<<"${ENV_MODULES}"
    module load "${modules[@]}"
  fi
  if [[ -n "${ENV_CONDA:-}" ]]; then
    activate_conda
  fi
  if [[ -n "${ENV_VENV:-}" ]]; then
    set +u
    # shellcheck source=/dev/null
    source "${ENV_VENV}/bin/activate"
    set -u
  fi
}

# Run a command in the Apptainer/Singularity image named by ENV_CONTAINER (with
# GPUs passed through, and ENV_CONTAINER_OVERLAY mounted read-only), or as is.
run_in_environment() {
  local runtime
  local -a options=()
  if [[ -z "${ENV_CONTAINER:-}" ]]; then
    "$@"
    return
  fi
  runtime="$(command -v apptainer || command -v singularity || true)"
  if [[ -z "${runtime}" ]]; then
    echo "expflow: ENV_CONTAINER is set but neither apptainer nor singularity is on PATH" >&2
    return 1
  fi
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    options+=(--nv)
  fi
  if [[ -n "${ENV_CONTAINER_OVERLAY:-}" ]]; then
    options+=(--overlay "${ENV_CONTAINER_OVERLAY}:ro")
  fi
  "${runtime}" exec "${options[@]}" "${ENV_CONTAINER}" "$@"
}

run_stage() {
  local stage="$1" exp_dir="$2"
  shift 2
  load_settings || return 1

  EXPFLOW_STAGE="${stage}"
  EXPFLOW_EXP_DIR="$(cd "${exp_dir}" && pwd)"
  EXPFLOW_EXP_ID="${EXPFLOW_EXP_DIR##*/}"
  export EXPFLOW_LOCAL_JOB_ID="${EXPFLOW_LOCAL_JOB_ID:-local-$$}"  # bash scripts/train.sbatch by hand
  EXPFLOW_JOB_ID="$(expflow_runtime job-id)"  # SLURM's id as sacct names it (a sweep's task: 44_3)
  EXPFLOW_CONFIG="${EXPFLOW_EXP_DIR}/config.yaml"
  EXPFLOW_CONFIG_JSON="${EXPFLOW_EXP_DIR}/config.json"
  EXPFLOW_RESULTS="${EXPFLOW_EXP_DIR}/${stage}_results.json"
  EXPFLOW_METRICS="${EXPFLOW_EXP_DIR}/${stage}_metrics.jsonl"
  EXPFLOW_CHECKPOINT_DIR="${EXPFLOW_EXP_DIR}/checkpoints"
  EXPFLOW_ATTEMPT="${EXPFLOW_ATTEMPT:-1}"  # set by make resume, with EXPFLOW_RESUME=1
  EXPFLOW_RESUME="${EXPFLOW_RESUME:-0}"
  EXPFLOW_RESTART="${SLURM_RESTART_COUNT:-0}"  # SLURM started this job again (requeue, preemption)
  if ((EXPFLOW_RESTART > 0)); then
    EXPFLOW_RESUME=1  # a restarted run continues from the checkpoints of the run before
  fi
  export EXPFLOW_STAGE EXPFLOW_EXP_DIR EXPFLOW_EXP_ID EXPFLOW_JOB_ID EXPFLOW_CONFIG \
    EXPFLOW_CONFIG_JSON EXPFLOW_RESULTS EXPFLOW_METRICS EXPFLOW_CHECKPOINT_DIR \
    EXPFLOW_ATTEMPT EXPFLOW_RESUME EXPFLOW_RESTART

  # The EXIT trap records the end in every case; TERM (scancel, time limit,
  # make cancel) and INT are turned into an exit so that the trap runs.
  EXPFLOW_SIGNAL=""
  trap 'expflow_record finish "$?" "${EXPFLOW_SIGNAL}"' EXIT
  trap 'EXPFLOW_SIGNAL=TERM; exit 143' TERM
  trap 'EXPFLOW_SIGNAL=INT; exit 130' INT

  # one log per job, appended to by each run of it (sbatch --open-mode=append)
  echo "===== expflow: ${stage} of ${EXPFLOW_EXP_ID}, job ${EXPFLOW_JOB_ID}, attempt ${EXPFLOW_ATTEMPT}," \
    "restart ${EXPFLOW_RESTART}, on ${SLURMD_NODENAME:-$(hostname)}, $(date -Is)"
  expflow_record start
  setup_environment
  expflow_record environment
  mkdir -p "${EXPFLOW_CHECKPOINT_DIR}"
  run_in_environment "$@"
}
