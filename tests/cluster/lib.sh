# shellcheck shell=bash
# lib.sh -- helpers shared by start.sh, stop.sh and check.sh. Sourced, not run.
#
# start.sh records the PID of every daemon it starts in RUN_DIR/<name>.pid.
# stop.sh and check.sh only ever look at those records, so they never touch
# a daemon somebody else started.

RUN_DIR="${SLURMLAB_RUN:-/run/slurmlab}"
SLURM_CONF=/etc/slurm/slurm.conf

# Daemons in start order; stop.sh walks this list backwards.
# The slurmd names are "slurmd-<node>", one per emulated node.
DAEMON_ORDER=(munged mariadbd slurmdbd slurmctld slurmd)

# daemon_exe NAME: the binary a recorded daemon must be running.
daemon_exe() {
  case "$1" in
    munged) echo /usr/sbin/munged ;;
    mariadbd) echo /usr/sbin/mariadbd ;;
    slurmdbd) echo /usr/sbin/slurmdbd ;;
    slurmctld) echo /usr/sbin/slurmctld ;;
    slurmd-*) echo /usr/sbin/slurmd ;;
    *) return 1 ;;
  esac
}

# pid_in FILE: the number in a pid file, or nothing.
pid_in() {
  [[ -r "$1" ]] || return 0
  tr -dc '0-9' <"$1"
}

# is_running PID EXE: PID is a live process running EXE.
# /usr/sbin/slurmctld and /usr/sbin/slurmd are alternatives symlinks to
# *-wlm binaries, so the comparison is against readlink -f of EXE. A PID
# from a stale pid file may have been reused by an unrelated process; the
# exe check catches that. Zombies have no exe link, so they count as gone.
is_running() {
  local pid="$1" exe
  exe="$(readlink -f "$2")"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  if ((EUID == 0)); then
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]]
    return
  fi
  # Without root the exe link of another user's process is unreadable:
  # compare the kernel's command name instead (the name it was started by,
  # so the symlink's, cut to 15 chars) and skip zombies.
  local comm stat state name
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  state="${stat##*) }"
  state="${state%% *}"
  name="$(basename "$2")"
  [[ "$comm" == "${name:0:15}" && "$state" != Z ]]
}

# recorded_names: names of all daemons with a pid record, in start order.
recorded_names() {
  local name file
  for name in "${DAEMON_ORDER[@]}"; do
    if [[ "$name" == slurmd ]]; then
      for file in "$RUN_DIR"/slurmd-*.pid; do
        [[ -e "$file" ]] && basename "$file" .pid
      done
    elif [[ -e "$RUN_DIR/$name.pid" ]]; then
      echo "$name"
    fi
  done
  return 0
}

# accounting_mode: what the current slurm.conf uses (slurmdbd, none, or unknown).
accounting_mode() {
  local line
  line="$(grep -E '^AccountingStorageType=' "$SLURM_CONF" 2>/dev/null || true)"
  case "$line" in
    *slurmdbd) echo slurmdbd ;;
    *none) echo none ;;
    *) echo unknown ;;
  esac
}
