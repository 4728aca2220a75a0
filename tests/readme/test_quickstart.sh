#!/usr/bin/env bash
# test_quickstart.sh README BUILD_DIR - run the README's quick start exactly
# as a reader would: the ```sh block under "## Quick start with ehrctl",
# extracted verbatim, run by bash with -e and pipefail from a fresh directory
# whose build/ is BUILD_DIR. Fails if any command fails, if the block leaves
# an ehrd running, or if the block is missing. Prints the block's output and
# the node's log on failure.
set -euo pipefail
readme=$1
build=$2
work=$(mktemp -d /tmp/ehr-quickstart-XXXXXX)
cleanup() {
    local pid_file=$work/quickstart/node/ehrd.pid
    if [ -f "$pid_file" ]; then
        kill -9 "$(cat "$pid_file")" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

awk '/^## Quick start with ehrctl/ { section = 1; next }
     section && /^## / { exit }
     section && /^```sh$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$readme" >"$work/quickstart.sh"
lines=$(wc -l <"$work/quickstart.sh")
if [ "$lines" -lt 10 ]; then
    echo "test_quickstart: no quick-start block found in $readme" >&2
    exit 1
fi
ln -s "$build" "$work/build"
cd "$work"
# A shell as a reader's: no passphrase in the environment, no node address.
if ! env -u EHR_PASSPHRASE -u EHR_NODE -u EHR_DATA \
    bash -euo pipefail "$work/quickstart.sh" >"$work/out.txt" 2>&1 </dev/null; then
    echo "test_quickstart: the quick start failed; its output:" >&2
    cat "$work/out.txt" >&2
    echo "--- node.log:" >&2
    cat "$work/quickstart/node.log" >&2 2>/dev/null || true
    exit 1
fi
# It ran to the end: the ledger verified, and the node it started has exited.
grep -q "^ledger ok" "$work/out.txt" || { cat "$work/out.txt" >&2; exit 1; }
[ ! -f "$work/quickstart/node/ehrd.pid" ] || { echo "test_quickstart: ehrd.pid left behind" >&2; exit 1; }
echo "test_quickstart: $lines lines ran as written"
