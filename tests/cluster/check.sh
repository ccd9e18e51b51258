#!/usr/bin/env bash
# check.sh -- is the cluster from start.sh up? Exit 0 if so, 1 if not.
#
# Needs no root: it lists the recorded daemons and asks Slurm itself
# (scontrol ping, sacctmgr when accounting uses slurmdbd, node states).
# "Up" means the Slurm commands work and every node is usable; the daemon
# list is there to tell what is missing.
# No -e: every check runs, and the result is the sum of them.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

FAILED=0

say() { printf '[check] %s\n' "$*"; }
fail() {
  say "$*"
  FAILED=1
}

check_daemons() {
  local names name pid
  mapfile -t names < <(recorded_names)
  if ((${#names[@]} == 0)); then
    say "no daemons recorded in $RUN_DIR (not started by start.sh?)"
    return
  fi
  for name in "${names[@]}"; do
    pid="$(pid_in "$RUN_DIR/$name.pid")"
    if is_running "$pid" "$(daemon_exe "$name")"; then
      say "up   $name (pid $pid)"
    else
      fail "DOWN $name (recorded pid ${pid:-?})"
    fi
  done
}

check_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munge works"
  else
    fail "munge does not work"
  fi
}

check_slurmctld() {
  local reply
  reply="$(scontrol ping 2>&1 | head -n 1)"
  if [[ "$reply" == *"is UP"* ]]; then
    say "slurmctld answers: $reply"
  else
    fail "slurmctld does not answer: ${reply:-no reply}"
  fi
}

check_slurmdbd() {
  local mode
  mode="$(accounting_mode)"
  if [[ "$mode" != slurmdbd ]]; then
    say "accounting: $mode (no slurmdbd expected)"
    return
  fi
  if sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; then
    say "accounting: slurmdbd answers"
  else
    fail "accounting: slurmdbd does not answer"
  fi
}

# Usable: idle, or busy with jobs. Not down, drained or not responding.
check_nodes() {
  local listing bad
  listing="$(sinfo -h -N -o '%N=%T' 2>/dev/null)"
  if [[ -z "$listing" ]]; then
    fail "nodes: none reported"
    return
  fi
  say "nodes: $(paste -sd ' ' <<<"$listing")"
  bad="$(grep -vE '^[^=]+=(idle|mixed|allocated|completing)$' <<<"$listing")"
  [[ -z "$bad" ]] || fail "nodes not usable: $(paste -sd ' ' <<<"$bad")"
}

main() {
  check_daemons
  check_munge
  check_slurmctld
  check_slurmdbd
  check_nodes
  if ((FAILED)); then
    say "cluster is NOT up"
    exit 1
  fi
  say "cluster is up"
}

main "$@"
