#!/usr/bin/env bash
# A single-node Slurm on this machine, for the cluster tests (root; Debian's slurm-wlm and munge):
#   bash scripts/slurm-single-node.sh start DIR   # writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   export SLURM_CONF=DIR/slurm.conf              # then sbatch/squeue/sinfo use it
#   bash scripts/slurm-single-node.sh stop DIR
# Its own ports (16817/16818), state and logs under DIR; no cgroups (proctrack/linuxproc), no accounting.
set -euo pipefail
cmd=${1:?usage: slurm-single-node.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: slurm-single-node.sh start|stop DIR}")
case "$cmd" in
start)
  command -v slurmctld >/dev/null && command -v munged >/dev/null \
    || { echo "needs slurm-wlm and munge: apt-get install -y slurm-wlm munge" >&2; exit 3; }
  mkdir -p "$dir/spool/ctld" "$dir/spool/d" "$dir/log"
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  cat > "$dir/slurm.conf" <<CONF
ClusterName=medft
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmdSpoolDir=$dir/spool/d
StateSaveLocation=$dir/spool/ctld
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; chown munge:munge /etc/munge/munge.key; }
    runuser -u munge -- /usr/sbin/munged
  fi
  /usr/sbin/slurmctld -f "$dir/slurm.conf"
  /usr/sbin/slurmd -f "$dir/slurm.conf"
  for _ in $(seq 1 30); do  # bounded: 30 s for the node to come up idle
    if SLURM_CONF="$dir/slurm.conf" sinfo -h -o %t 2>/dev/null | grep -qx idle; then
      echo "slurm up: export SLURM_CONF=$dir/slurm.conf"; exit 0
    fi
    sleep 1
  done
  echo "slurm did not come up in 30 s; logs in $dir/log" >&2; exit 1
  ;;
stop)
  for d in slurmd slurmctld; do
    [ -f "$dir/$d.pid" ] && kill "$(cat "$dir/$d.pid")" 2>/dev/null || true
  done
  ;;
*) echo "usage: slurm-single-node.sh start|stop DIR" >&2; exit 2 ;;
esac
