#!/usr/bin/env bash
# The demo sweep (scripts/sweeps/demo.json) on a real Slurm: a one-node cluster on localhost
# (munged, slurmctld, slurmd from Debian's slurm-wlm, ProctrackType=proctrack/linuxproc, no
# cgroups), every stage a job array chained with afterok. Checks that every output exists,
# loads and equals the local run's byte for byte; then kills one running array task with
# scancel, resubmits only what is undone, and checks the same again. Cleans up the daemons.
# Run by `make test` (through `make test-slurm`) when the machine can: root and apt-get (or
# Slurm already installed); otherwise it says why and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
. scripts/env.sh
avr="$CARGO_TARGET_DIR/debug/avr"
t0=$(date +%s)
log() { printf '[slurm-test] %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "not run: needs root and apt-get to install slurm-wlm and munge"; exit 0
  fi
  log "installing slurm-wlm and munge (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q slurm-wlm munge >/dev/null 2>&1; } ||
    { log "not run: apt-get could not install slurm-wlm and munge"; exit 0; }
fi
[ "$(id -u)" = 0 ] || { log "not run: slurmd must run as root"; exit 0; }

T="$(mktemp -d /tmp/avr-slurm-test.XXXXXX)"
cleanup() {
  for d in slurmd slurmctld munged; do
    [ -f "$T/$d.pid" ] && kill "$(cat "$T/$d.pid")" 2>/dev/null || true
  done
  sleep 1
  rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T"/{state,spool,log}
host="$(hostname -s)"
port=$((17000 + $$ % 2000))
cat > "$T/slurm.conf" <<EOF
ClusterName=avrtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$T/munge.sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmdSpoolDir=$T/spool
StateSaveLocation=$T/state
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$T/slurm.conf"
mungekey -c -k "$T/munge.key" 2>/dev/null || dd if=/dev/urandom of="$T/munge.key" bs=1024 count=1 2>/dev/null
chmod 600 "$T/munge.key"
munged --force -S "$T/munge.sock" --key-file="$T/munge.key" --pid-file="$T/munged.pid" \
  --log-file="$T/log/munged.log" --seed-file="$T/munge.seed" || fail "munged did not start"
slurmctld || fail "slurmctld did not start ($T/log/slurmctld.log)"
slurmd || fail "slurmd did not start"
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.5; done
sinfo -h -o %T | grep -qx idle || fail "the node never became idle: $(tail -n 5 "$T/log/slurmctld.log")"
log "cluster up: $(sinfo -h -o '%P %D %T %N')"

# Three working folders with the same relative layout (outputs embed their data paths).
for w in local slurm killed; do
  mkdir -p "$T/$w" && ln -s "$repo/model_ckpts" "$T/$w/model_ckpts"
  (cd "$T/$w" && "$avr" sweep plan "$repo/scripts/sweeps/demo.json" --out sweep >/dev/null)
done
jobs=$(python3 -c "import json;print(len(json.load(open('$T/local/sweep/jobs.json'))['jobs']))")
(cd "$T/local" && "$avr" sweep local sweep --jobs 2 >/dev/null) || fail "the local run failed"
gathered() { (cd "$T/$1" && "$avr" sweep gather sweep); }
gathered local | grep -q missing && fail "the local run left outputs missing"

# Waits until none of this sweep's jobs is queued or running (600 s at most).
wait_idle() {
  for _ in $(seq 1200); do
    [ -z "$(squeue -h -n "$(squeue_names)" 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  fail "jobs still queued after 600 s: $(squeue)"
}
squeue_names() { echo demo-generate,demo-train,demo-masks,demo-report; }
done_count() { (cd "$T/$1" && "$avr" sweep status sweep --json) | python3 -c "import json,sys;print(json.load(sys.stdin)['counts'].get('done',0))"; }
same_as_local() {
  diff <(gathered local) <(gathered "$1") >/dev/null || { diff <(gathered local) <(gathered "$1") >&2; fail "$1: outputs differ from the local run"; }
}

(cd "$T/slurm" && "$avr" sweep slurm sweep --max-parallel 2 >/dev/null) || fail "submission failed"
wait_idle
[ "$(done_count slurm)" = "$jobs" ] || fail "slurm: $(done_count slurm) of $jobs jobs done"
same_as_local slurm
log "whole sweep: $jobs jobs in 4 chained arrays, all done, outputs byte-identical to the local run"

# Kill one masks array task while it runs, then resubmit what is undone.
(cd "$T/killed" && "$avr" sweep slurm sweep --max-parallel 2 >/dev/null) || fail "submission failed"
victim=""
for _ in $(seq 3000); do
  victim="$(squeue -h -n demo-masks -t R -o %i 2>/dev/null | grep _ | head -n 1 || true)"
  [ -n "$victim" ] && break
  sleep 0.1
done
[ -n "$victim" ] || fail "no masks task was ever seen running"
scancel "$victim"
log "scancel $victim (a running masks task)"
# The report array waits on afterok of a stage that can no longer succeed: cancel what is left.
for _ in $(seq 600); do
  [ -z "$(squeue -h -n demo-masks 2>/dev/null)" ] && break; sleep 0.5
done
scancel -n demo-report 2>/dev/null || true
wait_idle
undone=$((jobs - $(done_count killed)))
[ "$undone" -ge 2 ] || fail "the kill left $undone jobs undone (expected the killed task and the report)"
(cd "$T/killed" && "$avr" sweep slurm sweep --only-undone --max-parallel 2 >/dev/null) || fail "resubmission failed"
wait_idle
[ "$(done_count killed)" = "$jobs" ] || fail "after resubmission: $(done_count killed) of $jobs done"
same_as_local killed
log "killed run: $undone jobs resubmitted alone, all done, outputs byte-identical to the local run"
log "ok: $((2 * jobs + undone)) jobs submitted, all completed, $undone resubmitted; $(( $(date +%s) - t0 )) s"
