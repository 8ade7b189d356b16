#!/usr/bin/env bash
# One CI fuzz smoke run (CTest label `fuzz`, registered by tests/fuzz/CMakeLists.txt):
#   smoke.sh BINARY CORPUS_DIR SCRATCH_DIR SECONDS
# Runs the libFuzzer BINARY for SECONDS over the seed corpus in CORPUS_DIR
# (read only) and a fresh SCRATCH_DIR (where new inputs and any crash land),
# then prints one summary line. Fails on any crash, leak, timeout (an input
# taking over 5 s) or memory blow-up (over 2 GiB), printing the command that
# reproduces it.
set -uo pipefail
binary=$1 corpus=$2 scratch=$3 seconds=$4
name=$(basename "$binary")
rm -rf "$scratch"
mkdir -p "$scratch/new"
log="$scratch/fuzz.log"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
"$binary" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$scratch/" "$scratch/new" "$corpus" >"$log" 2>&1
status=$?
stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
runs=$(stat number_of_executed_units)
per_second=$(stat average_exec_per_sec)
new_inputs=$(find "$scratch/new" -type f | wc -l)
if [ "$status" -ne 0 ]; then
  tail -n 60 "$log"
  echo "fuzz $name: FAILED (exit $status) after ${runs:-?} executions; log: $log"
  for artifact in "$scratch"/crash-* "$scratch"/leak-* "$scratch"/timeout-* "$scratch"/oom-*; do
    [ -e "$artifact" ] && echo "reproduce: $binary $artifact"
  done
  exit 1
fi
echo "fuzz $name: ${runs:-?} executions in ${seconds}s (${per_second:-?}/s), $(find "$corpus" -type f | wc -l) seeds, $new_inputs new inputs" |
  tee "$scratch/summary.txt"
