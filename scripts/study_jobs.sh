# The masks stage's job list and pool, and the α stages' milestone (sourced by scripts/study.sh;
# tests/study_jobs.rs).
# They read $ckpts, $masks, $SHAPES and $MASK_SEEDS.

# The milestones, best first, then the lowest, then the rest from the top.
milestones_in_mask_order() {
  local sorted; sorted=$(ls "$ckpts"/scl_*.safetensors 2> /dev/null | sort -V)
  [ -n "$sorted" ] || return 0
  local best lowest; best=$(tail -n 1 <<< "$sorted"); lowest=$(head -n 1 <<< "$sorted")
  echo "$best"
  [ "$lowest" != "$best" ] && echo "$lowest"
  sort -rV <<< "$sorted" | grep -vxF -e "$best" -e "$lowest" || true
}

# The α stage's milestone: the one its record names once it has run (training may pass a better
# milestone later, and the study's α must not move with it), else the best milestone now.
alpha_milestone() {
  if [ -f "$masks/alpha.json" ]; then
    python3 -c 'import json, sys
record = json.load(open(sys.argv[1]))
if "checkpoint" not in record:
    sys.exit(sys.argv[1] + ": the α record names no checkpoint")
print(record["checkpoint"])' "$masks/alpha.json"
  else
    ls "$ckpts"/scl_*.safetensors | sort -V | tail -n 1
  fi
}

# The masks left to train, one "checkpoint task seed" line each, in the order they are wanted
# if the run stops part way: the issue's minimum first (the best, the lowest and the next
# milestone from the top: low to high), seed by seed, so that the whole development comes
# before the replicates; then any further milestones, seed by seed.
mask_jobs() {
  local all; all=$(milestones_in_mask_order)
  [ -n "$all" ] || return 0
  local span rest; span=$(head -n 3 <<< "$all"); rest=$(tail -n +4 <<< "$all")
  local r ck task
  for r in $MASK_SEEDS; do
    for ck in $span; do for task in $SHAPES all-shapes; do mask_job_line "$ck" "$task" "$r"; done; done
  done
  for ck in $rest; do
    for r in $MASK_SEEDS; do for task in $SHAPES all-shapes; do mask_job_line "$ck" "$task" "$r"; done; done
  done
}

# The job line of checkpoint $1, task $2, seed $3, unless that mask is finished.
mask_job_line() {
  local out; out="$masks/$(basename "$1" .safetensors)/$2-s$3.safetensors"
  [ -f "$out" ] || echo "$1 $2 $3"
}

# The pool. `pool_run N JOB` reads one job per line on stdin and runs `JOB <the line's words>`
# (a shell function or command) for each, in the order of the lines, at most N at once, each
# job its own process group. It returns once every job has finished. The first job that fails
# stops the pool: the jobs still running are stopped (TERM to their groups) and waited for, and
# the pool returns that job's status. A TERM or INT to the shell stops the running jobs too, so
# killing the stage never leaves a job behind.
# Why a pool: on this 2-core machine two one-thread masks at once run 1.2–1.5× the steps of
# one mask on two threads (BENCHMARKS.md).

pool_stop() {
  local p tries
  [ ${#pids[@]} -gt 0 ] || return 0
  # Each job is its own process group (set -m in pool_run): stop the whole group, so that
  # the command a job runs stops too, even when the job's shell is already gone (a
  # `pkill -f scripts/study.sh` also hits the jobs' subshells, which share the command line).
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do
    for tries in $(seq 300); do kill -0 -- "-$p" 2> /dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
  done
}

# Whether process $1 runs (a zombie has finished: it only waits to be reaped). Shell builtins
# only: the pool asks this every poll, and a fork per poll is a process that takes a core from
# the jobs (and from a benchmark beside them: a training step's two OpenMP threads wait for the
# slower one, so a poller forking 15 times a second cut `avr bench train` from 245 to as little
# as 17 problems/s, 2026-12-07).
process_alive() {
  local stat
  { read -r stat < "/proc/$1/stat"; } 2> /dev/null || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

pool_run() {
  local width=$1 job=$2 line status=0 pids=()
  [[ "$width" =~ ^[1-9][0-9]*$ ]] || { echo "pool: width '$width' is not a positive count" >&2; return 2; }
  [ -n "$job" ] || { echo "pool: no job named" >&2; return 2; }
  trap 'pool_stop; exit 143' TERM INT
  set -m
  while read -r line; do
    while [ "$status" -eq 0 ] && [ ${#pids[@]} -ge "$width" ]; do pool_reap || status=$?; done
    [ "$status" -eq 0 ] || break
    # The job must not read the pool's list.
    "$job" $line < /dev/null &
    pids+=($!)
  done
  while [ "$status" -eq 0 ] && [ ${#pids[@]} -gt 0 ]; do pool_reap || status=$?; done
  [ "$status" -eq 0 ] || pool_stop
  set +m
  trap - TERM INT
  return "$status"
}

# Takes the finished jobs out of pool_run's `pids`, or waits a moment (POOL_POLL_S, default 1 s;
# a job here runs for minutes) when none has finished;
# fails with the status of a job that failed. (Not `wait -n`: a job that ends while the shell
# is busy elsewhere can be reaped before it, and then `wait -n` never reports it.)
pool_reap() {
  local p left=() failed=0
  for p in "${pids[@]}"; do
    if process_alive "$p"; then left+=("$p"); else wait "$p" || failed=$?; fi
  done
  pids=(${left[@]+"${left[@]}"})
  [ "$failed" -eq 0 ] || return "$failed"
  [ ${#pids[@]} -lt "$width" ] || sleep "${POOL_POLL_S:-1}"
}
