#!/usr/bin/env bash
# test_unit_verify.sh UNIT EHRD MANDIR - `systemd-analyze verify` finds
# nothing to say about packaging/ehrd.service: any warning or error fails.
# verify checks that ExecStart's binary exists and that the man pages of
# Documentation= resolve, so it runs on a copy whose ExecStart is this
# build's ehrd, with MANPATH at this build's man pages (packaging/). Then
# `systemd-analyze security` must rate the hardening at most 2.0 of 10 (it
# is 1.6): a setting dropped by mistake shows there.
set -euo pipefail
unit=$1
ehrd=$2
mandir=$3

for tool in systemd-analyze; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (scripts/setup installs it)"; exit 1; }
done
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
grep -q '^ExecStart=/usr/bin/ehrd ' "$unit" || { echo "FAIL: ExecStart is not /usr/bin/ehrd"; exit 1; }
[ -f "$mandir/man8/ehrd.8.gz" ] || { echo "FAIL: no $mandir/man8/ehrd.8.gz (scdoc missing?)"; exit 1; }
sed "s|^ExecStart=/usr/bin/ehrd |ExecStart=$ehrd |" "$unit" > "$scratch/ehrd.service"

rc=0
out=$(MANPATH="$mandir" systemd-analyze verify "$scratch/ehrd.service" 2>&1) || rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
    echo "FAIL: systemd-analyze verify (exit $rc):"
    printf '%s\n' "$out"
    exit 1
fi
echo "ok: systemd-analyze verify is silent"

rc=0
out=$(systemd-analyze security --offline=yes --threshold=20 "$scratch/ehrd.service" 2>&1) || rc=$?
printf '%s\n' "$out" | grep 'Overall exposure level' || true
if [ $rc -ne 0 ]; then
    echo "FAIL: systemd-analyze security rates the unit's exposure above 2.0 (exit $rc):"
    printf '%s\n' "$out" | grep '^✗' || true
    exit 1
fi
