# shellcheck shell=bash
# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
# Shared by scripts/train.sbatch and scripts/eval.sbatch: sourced, not run.
#
# run_stage STAGE EXP_DIR COMMAND...
#   exports the EXPFLOW_* variables your code reads (README.md, "The job
#   contract"), records the run in EXP_DIR/runs/ (start, end, exit code, node),
#   sets up the environment named in settings.env, then runs COMMAND.
# The same functions run under SLURM and on the local backend (plain bash).

# SIGTERM and SIGINT reach the whole process group (make cancel, scancel,
# Ctrl-C): the runtime's own steps ignore them, so that a signal never cuts a
# record short; this shell's traps act on them once the step is done.
#
# A step's output is read through a pipe whose last part runs in this shell
# (lastpipe), never through a command or process substitution: bash 5.2 can
# run this shell's TERM or INT trap in the subshell of one before resetting
# it, mid-parse, which fails with a syntax error (exit 2), and a job cancelled
# while it set itself up was recorded FAILED. For the same reason this file
# takes no $(...) once the traps are set.
shopt -s lastpipe
expflow_runtime() {
  (
    trap '' TERM INT
    exec python3 -I expflow_runtime/run.py "$@"
  )
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
  expflow_runtime job-settings | while IFS= read -r -d '' record; do
    if [[ "${record}" == END ]]; then
      complete=1
    elif [[ "${record}" =~ ^[A-Z][A-Z0-9_]*= ]]; then
      printf -v "${record%%=*}" '%s' "${record#*=}"
    fi
  done || true  # a refusal is said below
  if ((complete == 0)); then
    echo "expflow: settings.env was refused (see above); nothing was run" >&2
    return 1
  fi
}

# config_flags EXP_DIR [KEY=--FLAG ...]
#   sets the array EXPFLOW_FLAGS to the experiment's config (SET overrides
#   included) as command-line flags for a program that takes argparse flags:
#   every key as --optimizer.lr=0.1, or only the keys given, under the flags
#   given (optimizer.lr=--lr). true is the bare flag, false and null are left
#   out, a list is the flag and its items. In a stage script:
#     config_flags "$1" optimizer.lr=--lr training.epochs=--epochs
#     run_stage train "$1" python3 my_train.py "${EXPFLOW_FLAGS[@]}"
config_flags() {
  local record count
  local -a records=()
  expflow_runtime config-flags "$@" | while IFS= read -r -d '' record; do
    records+=("${record}")
  done || true  # a refusal is said below
  count=${#records[@]}
  if ((count == 0)) || [[ "${records[count - 1]}" != END ]]; then
    echo "expflow: the config could not be turned into flags (see above); nothing was run" >&2
    return 1
  fi
  # shellcheck disable=SC2034  # the stage script reads it
  EXPFLOW_FLAGS=("${records[@]:0:count-1}")
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
    base="${CONDA_EXE%/*}"  # .../bin/conda -> ...
    base="${base%/*}"
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

# LAUNCHER=srun or torchrun (docs/long-jobs.md): the command that starts the
# program on every node, in two parts (the srun in front of the container, and
# what runs inside it), and MASTER_ADDR/MASTER_PORT exported, from run.py
# job-launch. Outside SLURM there is no srun: the program runs once.
EXPFLOW_LAUNCH_SRUN=()
EXPFLOW_LAUNCH_INNER=()
read_launch() {
  local record
  if [[ "${EXPFLOW_LAUNCHER:-none}" == none ]]; then
    return 0
  fi
  if [[ -z "${SLURM_JOB_ID:-}" ]]; then
    echo "expflow: LAUNCHER=${EXPFLOW_LAUNCHER} needs SLURM; on the local backend the program runs once"
    return 0
  fi
  expflow_runtime job-launch | while IFS= read -r -d '' record; do
    case "${record}" in
      env:MASTER_ADDR=* | env:MASTER_PORT=*) export "${record#env:}" ;;
      srun:*) EXPFLOW_LAUNCH_SRUN+=("${record#srun:}") ;;
      inner:*) EXPFLOW_LAUNCH_INNER+=("${record#inner:}") ;;
    esac
  done || true  # a refusal is said below
  if ((${#EXPFLOW_LAUNCH_SRUN[@]} == 0)); then
    echo "expflow: cannot launch with LAUNCHER=${EXPFLOW_LAUNCHER} (see above); nothing was run" >&2
    return 1
  fi
  echo "expflow: launching with ${EXPFLOW_LAUNCH_SRUN[*]} ${EXPFLOW_LAUNCH_INNER[*]}" \
    "(MASTER_ADDR=${MASTER_ADDR:-} MASTER_PORT=${MASTER_PORT:-})"
}

# Run a command in the Apptainer/Singularity image named by ENV_CONTAINER (with
# GPUs passed through, and ENV_CONTAINER_OVERLAY mounted read-only), or as is,
# started on the job's nodes as LAUNCHER says; either way as this shell's child
# that signals reach (run_and_wait).
run_in_environment() {
  local runtime
  local -a container=() options=()
  if [[ -n "${ENV_CONTAINER:-}" ]]; then
    runtime=""
    if command -v apptainer >/dev/null; then
      runtime=apptainer
    elif command -v singularity >/dev/null; then
      runtime=singularity
    fi
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
    container=("${runtime}" exec "${options[@]}" "${ENV_CONTAINER}")
  fi
  run_and_wait "${EXPFLOW_LAUNCH_SRUN[@]}" "${container[@]}" "${EXPFLOW_LAUNCH_INNER[@]}" "$@"
}

# ----------------------------------------------------------------- long jobs
# Before the time limit (sbatch --signal=B:USR1@TIME_LIMIT_GRACE; on the local
# backend, a timer of this shell's) the program is asked to save: SIGUSR1, and
# the file EXPFLOW_STOP_FILE. Once it has exited, the job is requeued and starts
# again with EXPFLOW_RESUME=1 from the same checkpoints, at most MAX_RESTARTS
# times; after that it runs on into its time limit and ends TIMEOUT.

# The program runs in the background and this shell waits for it: bash runs a
# trap only once its foreground command has ended, and the signal must be
# handled while the program still runs. (A simple command: $! is the program.)
run_and_wait() {
  "$@" &
  EXPFLOW_CHILD=$!
  local status
  while :; do
    wait "${EXPFLOW_CHILD}" && return 0
    status=$?
    if ! kill -0 "${EXPFLOW_CHILD}" 2>/dev/null; then
      return "${status}"
    fi  # a trap interrupted the wait; the program runs on
  done
}

on_time_limit() {
  if ((EXPFLOW_RESTART >= ${EXPFLOW_MAX_RESTARTS:-0})); then
    echo "expflow: the time limit is near and no restart is left (MAX_RESTARTS=${EXPFLOW_MAX_RESTARTS:-0})"
    return 0
  fi
  echo "expflow: the time limit is near: asking the program to save (SIGUSR1, ${EXPFLOW_STOP_FILE})"
  : >"${EXPFLOW_STOP_FILE}"
  EXPFLOW_REQUEUE=1
  # srun passes SIGUSR1 on to every task; torchrun would die of it: its
  # workers see only the stop file
  if [[ "${EXPFLOW_LAUNCHER:-none}" != torchrun ]]; then
    kill -USR1 "${EXPFLOW_CHILD:-0}" 2>/dev/null || true
  fi
}

# scancel, preemption, make cancel: SIGTERM. SLURM signals the program too and
# kills what is left KillWait seconds later; the run ends when the program does,
# so that a program that saves on SIGTERM can finish saving. The local backend
# has no SLURM to kill it: a timer does, after EXPFLOW_LOCAL_KILL_WAIT seconds.
on_terminate() {
  local killer=""
  EXPFLOW_SIGNAL=TERM
  if [[ -n "${EXPFLOW_CHILD:-}" ]]; then
    kill -TERM "${EXPFLOW_CHILD}" 2>/dev/null || true
    if [[ -z "${SLURM_JOB_ID:-}" ]]; then
      (
        trap - EXIT TERM INT
        sleep "${EXPFLOW_LOCAL_KILL_WAIT:-30}"
        kill -KILL "${EXPFLOW_CHILD}" 2>/dev/null || true
      ) &
      killer=$!
    fi
    wait "${EXPFLOW_CHILD}" 2>/dev/null || true
    if [[ -n "${killer}" ]]; then
      kill "${killer}" 2>/dev/null || true
    fi
  fi
  exit 143
}

# The program has saved and exited: record this run as REQUEUED and start the
# job again (SLURM: scontrol requeue; local backend: this script once more).
requeue_job() {
  local status="$1"
  stop_local_timer
  expflow_record finish "${status}" REQUEUE
  trap - EXIT
  rm -f "${EXPFLOW_STOP_FILE}"
  if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    echo "expflow: requeueing job ${SLURM_JOB_ID} (restart $((EXPFLOW_RESTART + 1)) of at most ${EXPFLOW_MAX_RESTARTS})"
    if ! scontrol requeue "${SLURM_JOB_ID}"; then
      # the program stopped early and nothing will start it again: not COMPLETED
      echo "expflow: scontrol requeue failed; the run stopped at its checkpoint (make resume goes on)" >&2
      expflow_record finish 1 ""
      exit 1
    fi
    exit 0
  fi
  echo "expflow: starting again (restart $((EXPFLOW_RESTART + 1)) of at most ${EXPFLOW_MAX_RESTARTS})"
  export EXPFLOW_LOCAL_RESTART_COUNT=$((EXPFLOW_RESTART + 1))
  if [[ -n "${BASH_EXECUTION_STRING:-}" ]]; then  # run as bash -c SCRIPT (the local backend)
    exec bash -c "${BASH_EXECUTION_STRING}" "$0" "${EXPFLOW_EXP_DIR}"
  fi
  exec bash "$0" "${EXPFLOW_EXP_DIR}"
}

# The local backend has no scheduler to enforce TIME: a timer does, with the
# same signal and grace, so the contract can be tried on a laptop.
start_local_timer() {
  local limit grace
  EXPFLOW_TIMER=""
  if [[ -n "${SLURM_JOB_ID:-}" || -z "${EXPFLOW_TIME_LIMIT:-}" ]]; then
    return 0
  fi
  expflow_runtime job-seconds "${EXPFLOW_TIME_LIMIT}" | read -r limit
  grace="${EXPFLOW_TIME_LIMIT_GRACE:-0}"
  if ((grace > limit)); then
    grace="${limit}"
  fi
  (
    trap - EXIT TERM INT
    sleep "$((limit - grace))"
    if ((${EXPFLOW_MAX_RESTARTS:-0} > 0 && grace > 0)); then
      kill -USR1 "$$"
    fi
    sleep "${grace}"
    kill -ALRM "$$"
  ) &
  EXPFLOW_TIMER=$!
}

stop_local_timer() {
  if [[ -n "${EXPFLOW_TIMER:-}" ]]; then
    kill "${EXPFLOW_TIMER}" 2>/dev/null || true
  fi
}

# The local time limit: the program is stopped and the run ends TIMEOUT.
on_local_timeout() {
  echo "expflow: time limit ${EXPFLOW_TIME_LIMIT} reached"
  kill -TERM "${EXPFLOW_CHILD:-0}" 2>/dev/null || true
  EXPFLOW_SIGNAL=TIMEOUT
  exit 143
}

run_stage() {
  local stage="$1" exp_dir="$2" status=0 now
  shift 2
  # A signal while the run is set up is noted, and acted on once its end can be recorded.
  EXPFLOW_SIGNAL=""
  trap 'EXPFLOW_SIGNAL=TERM' TERM
  trap 'EXPFLOW_SIGNAL=INT' INT
  load_settings || return 1

  EXPFLOW_STAGE="${stage}"
  CDPATH='' cd -- "${exp_dir}" || return 1  # CDPATH could send a relative name elsewhere
  EXPFLOW_EXP_DIR="${PWD}"
  cd -- "${OLDPWD}" || return 1
  EXPFLOW_EXP_ID="${EXPFLOW_EXP_DIR##*/}"
  export EXPFLOW_LOCAL_JOB_ID="${EXPFLOW_LOCAL_JOB_ID:-local-$$}"  # bash scripts/train.sbatch by hand
  expflow_runtime job-id | read -r EXPFLOW_JOB_ID  # SLURM's id as sacct names it (a sweep's task: 44_3)
  EXPFLOW_CONFIG="${EXPFLOW_EXP_DIR}/config.yaml"
  EXPFLOW_CONFIG_JSON="${EXPFLOW_EXP_DIR}/config.json"
  EXPFLOW_RESULTS="${EXPFLOW_EXP_DIR}/${stage}_results.json"
  EXPFLOW_METRICS="${EXPFLOW_EXP_DIR}/${stage}_metrics.jsonl"
  EXPFLOW_CHECKPOINT_DIR="${EXPFLOW_EXP_DIR}/checkpoints"
  EXPFLOW_ATTEMPT="${EXPFLOW_ATTEMPT:-1}"  # set by make resume, with EXPFLOW_RESUME=1
  EXPFLOW_RESUME="${EXPFLOW_RESUME:-0}"
  # SLURM (or the local backend) started this job again: requeue, preemption, node failure
  EXPFLOW_RESTART="${SLURM_RESTART_COUNT:-${EXPFLOW_LOCAL_RESTART_COUNT:-0}}"
  if ((EXPFLOW_RESTART > 0)); then
    EXPFLOW_RESUME=1  # a restarted run continues from the checkpoints of the run before
  fi
  EXPFLOW_STOP_FILE="${EXPFLOW_EXP_DIR}/runs/${stage}-${EXPFLOW_JOB_ID}.stop"
  rm -f "${EXPFLOW_STOP_FILE}"
  export EXPFLOW_STAGE EXPFLOW_EXP_DIR EXPFLOW_EXP_ID EXPFLOW_JOB_ID EXPFLOW_CONFIG \
    EXPFLOW_CONFIG_JSON EXPFLOW_RESULTS EXPFLOW_METRICS EXPFLOW_CHECKPOINT_DIR \
    EXPFLOW_ATTEMPT EXPFLOW_RESUME EXPFLOW_RESTART EXPFLOW_STOP_FILE

  # The EXIT trap records the end in every case; TERM (scancel, time limit,
  # make cancel) and INT are turned into an exit so that the trap runs.
  EXPFLOW_REQUEUE=""
  trap 'status=$?; stop_local_timer; expflow_record finish "${status}" "${EXPFLOW_SIGNAL}"' EXIT
  trap on_terminate TERM
  trap 'EXPFLOW_SIGNAL=INT; exit 130' INT
  case "${EXPFLOW_SIGNAL}" in
    TERM) exit 143 ;;
    INT) exit 130 ;;
  esac
  trap on_time_limit USR1
  trap on_local_timeout ALRM

  # one log per job, appended to by each run of it (sbatch --open-mode=append)
  printf -v now '%(%Y-%m-%dT%H:%M:%S%z)T' -1
  echo "===== expflow: ${stage} of ${EXPFLOW_EXP_ID}, job ${EXPFLOW_JOB_ID}, attempt ${EXPFLOW_ATTEMPT}," \
    "restart ${EXPFLOW_RESTART}, on ${SLURMD_NODENAME:-${HOSTNAME}}, ${now}"
  expflow_record start
  setup_environment
  expflow_record environment
  mkdir -p "${EXPFLOW_CHECKPOINT_DIR}"
  read_launch
  start_local_timer
  run_in_environment "$@" || status=$?
  if [[ -n "${EXPFLOW_REQUEUE}" ]]; then
    requeue_job "${status}"
  fi
  return "${status}"
}
