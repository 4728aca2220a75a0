#!/usr/bin/env bash
# run-fuzz.sh FUZZER CORPUS_DIR SECONDS
# Runs a libFuzzer target for a bounded time on a scratch copy of its seed
# corpus (the checked-in corpus is never modified). Fails on any crash.
set -euo pipefail
fuzzer=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
if [ -d "$corpus" ]; then cp -r "$corpus"/. "$work/corpus/"; fi
cd "$work"
"$fuzzer" -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 "$work/corpus" 2>&1 | tail -n 25
