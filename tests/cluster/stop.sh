#!/usr/bin/env bash
# stop.sh -- stop the daemons that start.sh started, and nothing else.
#
# Reads the PIDs start.sh recorded in RUN_DIR (default /run/slurmlab), checks
# that each is still the expected binary (a PID can be reused), sends
# SIGTERM, and SIGKILLs that same PID only if it ignores SIGTERM for 15 s.
# It never kills by name. Job processes (slurmstepd and the job's own) are
# left alone: scancel jobs first if they must go.
# No -e: one daemon that will not stop must not keep the others running.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

TERM_WAIT_S=15

say() { printf '[stop] %s\n' "$*"; }

# wait_gone PID EXE SECONDS: true once PID no longer runs EXE.
wait_gone() {
  local pid="$1" exe="$2" deadline=$((SECONDS + $3))
  while is_running "$pid" "$exe"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# A queue that still holds jobs is worth a note: their processes outlive us.
warn_about_jobs() {
  local jobs
  jobs="$(timeout 5 squeue -h -o %i 2>/dev/null | wc -l)" || return 0
  if ((jobs > 0)); then
    say "note: $jobs job(s) still queued or running; their processes are not stopped"
  fi
}

stop_one() {
  local name="$1" file="$RUN_DIR/$1.pid" pid exe
  pid="$(pid_in "$file")"
  exe="$(daemon_exe "$name")" || { say "$name: unknown daemon record, left alone"; return 0; }
  if ! is_running "$pid" "$exe"; then
    say "$name: recorded pid ${pid:-?} no longer runs $exe; forgetting it"
    rm -f "$file"
    return 0
  fi
  kill -TERM "$pid"
  if ! wait_gone "$pid" "$exe" "$TERM_WAIT_S"; then
    say "$name: pid $pid ignored SIGTERM for ${TERM_WAIT_S}s; sending SIGKILL"
    kill -KILL "$pid"
    wait_gone "$pid" "$exe" 5 || { say "$name: pid $pid survived SIGKILL"; return 1; }
  fi
  rm -f "$file"
  say "$name: stopped (pid $pid)"
}

main() {
  ((EUID == 0)) || { say "must run as root" >&2; exit 1; }
  local names rc=0 i
  mapfile -t names < <(recorded_names)
  if ((${#names[@]} == 0)); then
    say "nothing recorded in $RUN_DIR; nothing to stop"
    exit 0
  fi
  warn_about_jobs
  # Reverse start order: nodes, controller, slurmdbd, database, munge.
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do
    stop_one "${names[i]}" || rc=1
  done
  if ((rc)); then
    say "some daemons did not stop"
  else
    say "cluster stopped"
  fi
  exit "$rc"
}

main "$@"
