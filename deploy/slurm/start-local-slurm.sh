#!/usr/bin/env bash
# Start a single-node SLURM on this machine, for CI and for trying the SLURM recipes.
#
# Needs root. Installs Debian's slurmctld, slurmd, slurm-client and munge when missing,
# writes a minimal slurm.conf for this one node (2 CPUs at most, reached on 127.0.0.1),
# starts munged, slurmctld and slurmd (the packages' services do not start by themselves
# in a container), and waits until the node is idle.
#
# On success the only line on standard output is the variable to export, so that
#     eval "$(deploy/slurm/start-local-slurm.sh)"
# sets SLURM_CONF in the calling shell; the same line is kept in "$SLURM_DIR/env".
# Progress goes to standard error. A second call while SLURM runs does nothing.
#
# Settings (environment):
#   SKIPPERDASK_SLURM_DIR  configuration, state and logs (default /var/lib/skipperdask-slurm)
#   MUNGE_SOCKET           munged's socket (default: Debian's, /run/munge/munge.socket.2)
set -euo pipefail

SLURM_DIR=${SKIPPERDASK_SLURM_DIR:-/var/lib/skipperdask-slurm}
DEFAULT_MUNGE_SOCKET=/run/munge/munge.socket.2
MUNGE_SOCKET=${MUNGE_SOCKET:-$DEFAULT_MUNGE_SOCKET}
export SLURM_CONF=$SLURM_DIR/slurm.conf
NODE=$(hostname -s)

log() { echo "start-local-slurm: $*" >&2; }
fail() { log "$*"; exit 1; }

node_state() { sinfo --noheader --node="$NODE" --format=%T 2>/dev/null | head -n 1; }

announce() {
  echo "export SLURM_CONF=$SLURM_CONF" > "$SLURM_DIR/env"
  echo "export SLURM_CONF=$SLURM_CONF"
}

[ "$(id -u)" = 0 ] || fail "needs root (it installs packages and starts system daemons)"

if command -v sinfo > /dev/null && [ -f "$SLURM_CONF" ] && [ "$(node_state)" = idle ]; then
  log "SLURM already running, node $NODE idle"
  announce
  exit 0
fi

# --- packages ---------------------------------------------------------------------------
missing=()
for tool in slurmctld slurmd sinfo munged; do
  command -v "$tool" > /dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >&2
fi

# --- munge: the key, a socket directory every user can reach, the daemon ------------------
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge's key"
  mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
socket_dir=$(dirname "$MUNGE_SOCKET")
mkdir -p "$socket_dir" /var/lib/munge /var/log/munge
chown munge:munge "$socket_dir" /var/lib/munge /var/log/munge
# slurmctld, slurmd and every job's user connect to the socket: munged's own default
# mode for the directory keeps them out
chmod 0755 "$socket_dir"
if ! munge --socket="$MUNGE_SOCKET" --no-input > /dev/null 2>&1; then
  log "starting munged on $MUNGE_SOCKET"
  runuser -u munge -- munged --socket="$MUNGE_SOCKET"
fi
munge --socket="$MUNGE_SOCKET" --no-input | unmunge --socket="$MUNGE_SOCKET" > /dev/null \
  || fail "munge does not answer on $MUNGE_SOCKET"

# --- slurm.conf for this one node ---------------------------------------------------------
mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/spool" "$SLURM_DIR/log"
cpus=$(( $(nproc) < 2 ? $(nproc) : 2 ))
# what the node offers jobs: the machine's memory less 1 GiB for the system, in MiB
real_memory=$(( $(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
auth_info=""
if [ "$MUNGE_SOCKET" != "$DEFAULT_MUNGE_SOCKET" ]; then
  auth_info="AuthInfo=socket=$MUNGE_SOCKET"
fi
cat > "$SLURM_CONF" <<EOF
# Single-node SLURM written by deploy/slurm/start-local-slurm.sh (skipperdask CI).
ClusterName=skipperdask
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$auth_info
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
# no cgroups in a container: follow processes through /proc, bind nothing
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
# no mail server here
MailProg=/bin/true
SelectType=select/cons_tres
# cores are what jobs share out; memory requests are checked against RealMemory only
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# --- the daemons --------------------------------------------------------------------------
if ! scontrol ping 2> /dev/null | grep -q UP; then
  log "starting slurmctld"
  slurmctld
fi
if ! pgrep -F "$SLURM_DIR/slurmd.pid" slurmd > /dev/null 2>&1; then
  log "starting slurmd as node $NODE"
  slurmd -N "$NODE"
else
  scontrol reconfigure
fi

for _ in $(seq 120); do
  state=$(node_state)
  [ "$state" = idle ] && break
  sleep 0.5
done
if [ "$(node_state)" != idle ]; then
  tail -n 20 "$SLURM_DIR/log/slurmctld.log" "$SLURM_DIR/log/slurmd.log" >&2 || true
  fail "node $NODE is '$(node_state)', not idle (logs in $SLURM_DIR/log)"
fi
log "node $NODE idle: $cpus CPUs, $real_memory MiB"
announce
