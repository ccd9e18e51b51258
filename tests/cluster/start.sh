#!/usr/bin/env bash
# start.sh -- start a single-host SLURM cluster that imitates NYU's Torch.
#
# Debian 12, as root. Installs munge and Slurm 22.05 (plus slurmdbd and
# MariaDB), writes the configs, starts every daemon directly (there is no
# systemd here), creates the accounts and waits until every node is usable.
# Safe to re-run: it starts only what is down. stop.sh stops what this script
# started. See README.md for the layout and the knobs.
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

ACCOUNTING="${SLURMLAB_ACCOUNTING:-slurmdbd}"
read -r -a LAB_USERS <<<"${SLURMLAB_USERS-alice}"
WAIT_S="${SLURMLAB_WAIT:-90}"

CLUSTER=torch
ACCOUNTS=(torch_pr_68_general torch_pr_68_tandon_advanced) # first = default
DB_PASS=slurmlab # MariaDB only listens on 127.0.0.1
LOG_DIR=/var/log/slurm
APT_LOG=/var/log/slurmlab-apt.log
FAKEGPU_DIR=/var/lib/slurmlab/fakegpu

# Emulated nodes: name, GPU type:count (- for none), slurmd port. Every
# slurmd runs on 127.0.0.1 with its own port.
NODES=(
  "cs001 -          6821"
  "gr001 rtx8000:4  6822"
  "gl001 l40s:4     6823"
  "gh001 h200:8     6824"
  "gm001 a100:2     6825"
  "gm002 a100:2     6826"
  "cp001 -          6827"
)

# Partitions: name, nodes, extra options. a100_multi has two nodes for
# multi-node jobs. cp001 is shared by two partitions: a job of the higher
# PriorityTier preempts one of preemptible, which SLURM requeues
# (PreemptType=preempt/partition_prio, PreemptMode=REQUEUE).
PARTITIONS=(
  "cs          cs001       Default=YES"
  "rtx8000     gr001       -"
  "l40s_public gl001       -"
  "h200_tandon gh001       -"
  "a100_multi  gm001,gm002 -"
  "preemptible cp001       PriorityTier=1 PreemptMode=REQUEUE"
  "priority    cp001       PriorityTier=10"
)

T0="$(date +%s%N)"
TMP_DIR=""
MADE_POLICY_RC=0

step() {
  local ms=$((($(date +%s%N) - T0) / 1000000))
  printf '[start +%d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}

die() {
  step "ERROR: $*" >&2
  exit 1
}

# With set -E a failing $(...) fires this trap in its subshell too; only the
# main shell reports, so each failure gives one message.
on_error() {
  ((BASH_SUBSHELL == 0)) || exit "$1"
  die "command failed (exit $1) at line $2: $3"
}

cleanup() {
  [[ -n "$TMP_DIR" ]] && rm -rf "$TMP_DIR"
  # Our policy-rc.d must not outlive the install, even a failed one.
  if ((MADE_POLICY_RC)); then rm -f /usr/sbin/policy-rc.d; fi
  return 0
}

check_args() {
  ((EUID == 0)) || die "must run as root"
  case "$ACCOUNTING" in
    slurmdbd | none) ;;
    *) die "SLURMLAB_ACCOUNTING must be slurmdbd or none, not '$ACCOUNTING'" ;;
  esac
  # The two modes keep separate controller and slurmd state, so job ids and
  # cached job credentials of one mode never meet the other.
  if [[ "$ACCOUNTING" == slurmdbd ]]; then
    STATE_DIR=/var/spool/slurmctld
    SPOOL_ROOT=/var/spool/slurmd
  else
    STATE_DIR=/var/spool/slurmctld-noacct
    SPOOL_ROOT=/var/spool/slurmd-noacct
  fi
}

# --------------------------------------------------------------- packages

missing_packages() {
  local pkgs=(munge slurmctld slurmd slurm-client) pkg
  [[ "$ACCOUNTING" == slurmdbd ]] && pkgs+=(slurmdbd mariadb-server)
  for pkg in "${pkgs[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
      echo "$pkg"
    fi
  done
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    step "packages already installed"
    return
  fi
  step "installing ${missing[*]} (log: $APT_LOG)"
  # Without a policy-rc.d that says "no", the postinst scripts would try to
  # start the daemons themselves, with their stock configs.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    MADE_POLICY_RC=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; die "apt-get update failed"; }
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$APT_LOG" 2>&1 ||
    { tail -n 20 "$APT_LOG" >&2; die "apt-get install failed"; }
  if ((MADE_POLICY_RC)); then
    rm -f /usr/sbin/policy-rc.d
    MADE_POLICY_RC=0
  fi
  step "packages installed"
}

# ------------------------------------------------------------ users, dirs

create_users() {
  local user
  for user in "${LAB_USERS[@]}"; do
    if ! id "$user" >/dev/null 2>&1; then
      useradd -m -s /bin/bash "$user"
      step "created user $user"
    fi
    # a per-user scratch directory, as on NYU's clusters (/scratch/<netid>)
    if [[ ! -d "/scratch/$user" ]]; then
      install -d -m 700 -o "$user" -g "$(id -gn "$user")" "/scratch/$user"
    fi
  done
}

make_dirs() {
  local line node
  mkdir -p "$RUN_DIR" /etc/slurm /run/slurm /run/munge "$LOG_DIR" "$STATE_DIR"
  chown slurm:slurm /run/slurm "$LOG_DIR" "$STATE_DIR"
  # munged refuses to run unless its socket dir belongs to it.
  chown munge:munge /run/munge
  chmod 755 /run/munge
  for line in "${NODES[@]}"; do
    read -r node _ <<<"$line"
    mkdir -p "$SPOOL_ROOT/$node"
  done
}

# Jobs read the node names (scontrol show hostnames: a multi-node job's
# MASTER_ADDR) and connect to them, as on a real cluster: every emulated node
# is this host.
resolve_node_names() {
  local line node names=()
  for line in "${NODES[@]}"; do
    read -r node _ <<<"$line"
    getent hosts "$node" >/dev/null || names+=("$node")
  done
  if ((${#names[@]})); then
    printf '127.0.0.1 %s # tests/cluster/start.sh\n' "${names[*]}" >>/etc/hosts
    step "added ${names[*]} to /etc/hosts"
  fi
}

# ----------------------------------------------------------------- configs

render_slurm_conf() {
  local line node gpu port part nodes extra gres_tres=""
  for line in "${NODES[@]}"; do
    read -r node gpu port <<<"$line"
    [[ "$gpu" == - || "$gres_tres" == *",gres/gpu:${gpu%%:*}"* ]] || gres_tres+=",gres/gpu:${gpu%%:*}"
  done
  cat <<EOF
# generated by tests/cluster/start.sh -- single host, emulated nodes
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_ROOT/%n
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
PrologFlags=Contain
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=5
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
EnforcePartLimits=ALL
MaxArraySize=1001
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=300
MessageTimeout=10
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
DefMemPerCPU=1024
EOF
  if [[ "$ACCOUNTING" == slurmdbd ]]; then
    cat <<EOF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageEnforce=associations,limits
AccountingStorageTRES=gres/gpu$gres_tres
JobCompType=jobcomp/none
EOF
  else
    cat <<EOF
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
EOF
  fi
  echo
  # config_overrides (above) lets 4 nodes of 8 CPUs run on a 2-core host.
  echo "NodeName=DEFAULT Sockets=1 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=16000 State=UNKNOWN"
  for line in "${NODES[@]}"; do
    read -r node gpu port <<<"$line"
    # Distinct NodeHostname + Port is what lets several slurmd share a host.
    printf 'NodeName=%s NodeHostname=%s NodeAddr=127.0.0.1 Port=%s' "$node" "$node" "$port"
    [[ "$gpu" == - ]] || printf ' Gres=gpu:%s' "$gpu"
    echo
  done
  echo
  echo "PartitionName=DEFAULT MaxTime=2-00:00:00 DefaultTime=01:00:00 State=UP"
  for line in "${PARTITIONS[@]}"; do
    read -r part nodes extra <<<"$line"
    printf 'PartitionName=%s Nodes=%s' "$part" "$nodes"
    [[ "$extra" == - ]] || printf ' %s' "$extra"
    echo
  done
}

# slurmd 22.05 drops a typed GPU that has no File= (the node then goes INVAL),
# so every fake GPU gets a char device with /dev/null's numbers. Nothing ever
# opens them: there is no cgroup device constraint.
render_gres_conf() {
  local line node gpu port
  echo "# generated by tests/cluster/start.sh -- fake GPUs (char devices 1,3)"
  echo "AutoDetect=off"
  for line in "${NODES[@]}"; do
    read -r node gpu port <<<"$line"
    [[ "$gpu" == - ]] && continue
    echo "NodeName=$node Name=gpu Type=${gpu%%:*} File=$FAKEGPU_DIR/$node/nvidia[0-$((${gpu##*:} - 1))]"
  done
}

render_slurmdbd_conf() {
  cat <<EOF
# generated by tests/cluster/start.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
}

# The buffer pool size slurmdbd asks for; it does not actually use it all.
render_mariadb_cnf() {
  cat <<'EOF'
# generated by tests/cluster/start.sh
[mysqld]
bind-address = 127.0.0.1
innodb_buffer_pool_size = 1024M
innodb_lock_wait_timeout = 900
EOF
}

# slurm_running: a slurmctld, slurmdbd or slurmd is up (whoever started it).
slurm_running() {
  local file exe
  for file in /run/slurm/*.pid; do
    [[ -e "$file" ]] || continue
    exe="$(daemon_exe "$(basename "$file" .pid)")" || continue
    is_running "$(pid_in "$file")" "$exe" && return 0
  done
  return 1
}

# Renders every config into TMP_DIR first. A running cluster would not pick
# up a changed config (an accounting mode switch needs a restart), so then
# we stop with advice instead of writing half a change.
write_configs() {
  local specs=(
    "slurm.conf /etc/slurm/slurm.conf 644 root render_slurm_conf"
    "gres.conf /etc/slurm/gres.conf 644 root render_gres_conf"
  )
  if [[ "$ACCOUNTING" == slurmdbd ]]; then
    specs+=(
      "slurmdbd.conf /etc/slurm/slurmdbd.conf 600 slurm render_slurmdbd_conf"
      "99-slurmlab.cnf /etc/mysql/mariadb.conf.d/99-slurmlab.cnf 644 root render_mariadb_cnf"
    )
  fi
  local spec tmp dest mode owner render changed=()
  for spec in "${specs[@]}"; do
    read -r tmp dest mode owner render <<<"$spec"
    "$render" >"$TMP_DIR/$tmp"
    cmp -s "$TMP_DIR/$tmp" "$dest" || changed+=("$spec")
  done
  if ((${#changed[@]} == 0)); then
    step "configs unchanged"
    return
  fi
  if slurm_running; then
    die "the running cluster uses other configs (accounting now: $(accounting_mode)," \
      "asked: $ACCOUNTING); run tests/cluster/stop.sh first"
  fi
  for spec in "${changed[@]}"; do
    read -r tmp dest mode owner render <<<"$spec"
    install -m "$mode" -o "$owner" -g "$owner" "$TMP_DIR/$tmp" "$dest"
    step "wrote $dest"
  done
}

make_fake_gpus() {
  local line node gpu port i dev
  for line in "${NODES[@]}"; do
    read -r node gpu port <<<"$line"
    [[ "$gpu" == - ]] && continue
    mkdir -p "$FAKEGPU_DIR/$node"
    for ((i = 0; i < ${gpu##*:}; i++)); do
      dev="$FAKEGPU_DIR/$node/nvidia$i"
      [[ -c "$dev" ]] && continue
      rm -f "$dev"
      # Where mknod is not allowed (no CAP_MKNOD) a plain file still gives a
      # working GPU count, but slurmd then sets no CUDA_VISIBLE_DEVICES.
      if ! mknod -m 666 "$dev" c 1 3 2>/dev/null; then
        touch "$dev"
        step "note: mknod not allowed; $dev is a plain file (no CUDA_VISIBLE_DEVICES in jobs)"
      fi
    done
  done
}

# ----------------------------------------------------------------- daemons

# wait_until WHAT CMD...: poll CMD until it succeeds or WAIT_S runs out.
wait_until() {
  local what="$1" deadline=$((SECONDS + WAIT_S))
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      step "timed out after ${WAIT_S}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

daemon_up() { is_running "$(pid_in "$1")" "$2"; }

# ensure_daemon NAME PIDFILE LOG CMD...: start NAME with CMD unless it runs.
# PIDFILE is the daemon's own pid file; once the new PID shows up there it
# is recorded in RUN_DIR/NAME.pid, the only PIDs stop.sh will signal.
ensure_daemon() {
  local name="$1" pidfile="$2" log="$3" exe pid
  shift 3
  exe="$(daemon_exe "$name")"
  pid="$(pid_in "$RUN_DIR/$name.pid")"
  if is_running "$pid" "$exe"; then
    step "$name already running (pid $pid)"
    return
  fi
  rm -f "$RUN_DIR/$name.pid"
  pid="$(pid_in "$pidfile")"
  if is_running "$pid" "$exe"; then
    step "$name already running (pid $pid, not started by start.sh: left alone)"
    return
  fi
  # Whatever is in the pid file is stale (a killed daemon): drop it so we
  # only ever record the PID of the process we start now.
  rm -f "$pidfile"
  "$@" || die "could not launch $name; see $log"
  wait_until "$name" daemon_up "$pidfile" "$exe" || die "$name did not start; see $log"
  pid="$(pid_in "$pidfile")"
  echo "$pid" >"$RUN_DIR/$name.pid"
  step "$name started (pid $pid)"
}

munge_works() { munge -n | unmunge; }

start_munge() {
  if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key --force
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  ensure_daemon munged /run/munge/munged.pid /var/log/munge/munged.log \
    runuser -u munge -- /usr/sbin/munged
  wait_until "munge" munge_works || die "munge does not work"
}

# mariadbd does not daemonize itself: detach it with setsid.
launch_mariadbd() {
  setsid -f /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
    </dev/null >>"$LOG_DIR/mariadbd.log" 2>&1
}

start_mariadb() {
  mkdir -p /run/mysqld
  chown mysql:mysql /run/mysqld
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    step "initialising the MariaDB data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >>"$LOG_DIR/mariadbd.log" 2>&1
  fi
  ensure_daemon mariadbd /run/mysqld/mysqld.pid "$LOG_DIR/mariadbd.log" launch_mariadbd
  wait_until "mariadb" mysqladmin ping || die "mariadb does not answer; see $LOG_DIR/mariadbd.log"
  # root reaches MariaDB through its unix socket; slurmdbd uses TCP.
  mysql <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
  ensure_daemon slurmdbd /run/slurm/slurmdbd.pid "$LOG_DIR/slurmdbd.log" /usr/sbin/slurmdbd
  # The very first start creates the tables, which takes a few seconds.
  wait_until "slurmdbd" sacctmgr -n show cluster || die "slurmdbd does not answer; see $LOG_DIR/slurmdbd.log"
}

# Reads each list once and only adds what is missing, so a re-run is cheap.
ensure_accounts() {
  local listing account user missing
  listing="$(sacctmgr -n -P show cluster format=cluster)"
  grep -qx "$CLUSTER" <<<"$listing" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  listing="$(sacctmgr -n -P show account format=account)"
  for account in "${ACCOUNTS[@]}"; do
    grep -qx "$account" <<<"$listing" ||
      sacctmgr -i add account "$account" cluster="$CLUSTER" description="$account" organization=nyu >/dev/null
  done
  listing="$(sacctmgr -n -P show assoc cluster="$CLUSTER" format=user,account)"
  for user in root "${LAB_USERS[@]}"; do
    missing=()
    for account in "${ACCOUNTS[@]}"; do
      grep -qx "$user|$account" <<<"$listing" || missing+=("$account")
    done
    if ((${#missing[@]})); then
      sacctmgr -i add user "$user" account="$(IFS=,; echo "${missing[*]}")" \
        cluster="$CLUSTER" defaultaccount="${ACCOUNTS[0]}" >/dev/null
    fi
  done
  # "add user" keeps an existing user's default account (root's is "root").
  local users
  users="$(sacctmgr -n -P show user format=user,defaultaccount)"
  for user in root "${LAB_USERS[@]}"; do
    grep -qx "$user|${ACCOUNTS[0]}" <<<"$users" ||
      sacctmgr -i modify user "$user" set defaultaccount="${ACCOUNTS[0]}" >/dev/null
  done
  # "add cluster" gives root an association with the "root" account; a real
  # Torch user has none, so drop it and root sees only the torch accounts.
  if grep -qx "root|root" <<<"$listing"; then
    sacctmgr -i delete user root account=root cluster="$CLUSTER" >/dev/null ||
      step "note: could not drop root's association with account root"
  fi
  step "accounts ready for: root ${LAB_USERS[*]}"
}

# slurmctld complains on stderr at every start that PrologFlags=Contain
# wants proctrack/cgroup (only true for pam_slurm_adopt): send it to the log.
launch_slurmctld() {
  /usr/sbin/slurmctld 2>>"$LOG_DIR/slurmctld.log"
}

ctld_answers() { [[ "$(scontrol ping 2>/dev/null)" == *"is UP"* ]]; }

start_slurmctld() {
  ensure_daemon slurmctld /run/slurm/slurmctld.pid "$LOG_DIR/slurmctld.log" launch_slurmctld
  wait_until "slurmctld" ctld_answers || die "slurmctld does not answer; see $LOG_DIR/slurmctld.log"
}

start_slurmds() {
  local line node
  for line in "${NODES[@]}"; do
    read -r node _ <<<"$line"
    ensure_daemon "slurmd-$node" "/run/slurm/slurmd-$node.pid" "$LOG_DIR/slurmd-$node.log" \
      /usr/sbin/slurmd -N "$node"
  done
}

# Usable: idle, or busy with jobs (a re-run while jobs run). Not down,
# drained, unknown or not responding ("idle*").
nodes_usable() {
  local states
  states="$(sinfo -h -N -o '%T')" || return 1
  [[ -n "$states" ]] && ! grep -qvE '^(idle|mixed|allocated|completing)$' <<<"$states"
}

wait_for_nodes() {
  if ! WAIT_S=20 wait_until "all nodes usable" nodes_usable; then
    # A node set DOWN or DRAIN by an earlier run (daemons killed while jobs
    # ran) may need a resume before it takes jobs again.
    step "resuming nodes that are not usable"
    local line node
    for line in "${NODES[@]}"; do
      read -r node _ <<<"$line"
      scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    done
    wait_until "all nodes usable" nodes_usable || {
      sinfo -N -l >&2
      die "nodes not usable; see $LOG_DIR/slurmctld.log"
    }
  fi
  step "nodes: $(sinfo -h -N -o '%N=%T' | paste -sd ' ')"
}

main() {
  trap 'on_error "$?" "$LINENO" "$BASH_COMMAND"' ERR
  trap cleanup EXIT
  check_args
  step "starting cluster $CLUSTER (accounting: $ACCOUNTING)"
  install_packages
  create_users
  make_dirs
  resolve_node_names
  TMP_DIR="$(mktemp -d)"
  write_configs
  make_fake_gpus
  start_munge
  if [[ "$ACCOUNTING" == slurmdbd ]]; then
    start_mariadb
    start_slurmdbd
    # Before slurmctld starts, so it loads the associations at once.
    ensure_accounts
  fi
  start_slurmctld
  start_slurmds
  wait_for_nodes
  step "cluster ready (accounting: $ACCOUNTING)"
}

main "$@"
