#!/usr/bin/env bash
# test_deb.sh BUILD_DIR - `cpack -G DEB` in a scratch directory makes the
# ehrchain .deb, and it holds exactly the files below (no test program, no
# stray install rule), its Depends come from the binaries' libraries
# (dpkg-shlibdeps), its maintainer scripts are there, its unit runs
# /usr/bin/ehrd, and its example config is one ehrd reads.
set -euo pipefail
build=$1

for tool in cpack dpkg-deb dpkg-shlibdeps; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (scripts/setup installs it)"; exit 1; }
done
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if ! cpack -G DEB --config "$build/CPackConfig.cmake" -B "$scratch" > "$scratch/cpack.log" 2>&1; then
    echo "FAIL: cpack -G DEB"
    cat "$scratch/cpack.log"
    exit 1
fi
deb=$(ls "$scratch"/ehrchain_*.deb)
fail=0

expected='./usr/bin/ehrctl
./usr/bin/ehrd
./usr/lib/systemd/system/ehrd.service
./usr/lib/sysusers.d/ehrchain.conf
./usr/share/doc/ehrchain/INSTALL.md
./usr/share/doc/ehrchain/README.md
./usr/share/doc/ehrchain/copyright
./usr/share/doc/ehrchain/examples/ehrd.json
./usr/share/man/man1/ehrctl.1.gz
./usr/share/man/man8/ehrd.8.gz'
# Every entry that is not a directory (dpkg-deb -c: mode, owner, size, date,
# time, path).
files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $6 }' | sort)
if [ "$files" != "$expected" ]; then
    echo "FAIL: the .deb's files differ from the expected list (< expected, > in the .deb):"
    diff <(printf '%s\n' "$expected") <(printf '%s\n' "$files") | grep '^[<>]' || true
    fail=1
fi

field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = ehrchain ] || { echo "FAIL: Package is $(field Package)"; fail=1; }
for lib in libc6 libsodium23 libsecp256k1-1 liblmdb0 libuv1 libnghttp2-14 libprotobuf-c1 \
    libjansson4 libsystemd0 libmicrohttpd12; do
    if ! field Depends | tr ',' '\n' | grep -q "^ *$lib\( \|$\)"; then
        echo "FAIL: Depends lacks $lib: $(field Depends)"
        fail=1
    fi
done

dpkg-deb -e "$deb" "$scratch/control"
for script in postinst prerm postrm; do
    if [ ! -x "$scratch/control/$script" ]; then
        echo "FAIL: no executable $script in the control archive"
        fail=1
    elif ! sh -n "$scratch/control/$script"; then
        echo "FAIL: $script is not valid sh"
        fail=1
    fi
done
grep -q 'systemd-sysusers ehrchain.conf' "$scratch/control/postinst" ||
    { echo "FAIL: postinst does not create the ehrchain user"; fail=1; }

dpkg-deb -x "$deb" "$scratch/root"
grep -qx 'ExecStart=/usr/bin/ehrd --config /etc/ehrchain/ehrd.json' \
    "$scratch/root/usr/lib/systemd/system/ehrd.service" ||
    { echo "FAIL: the packaged unit's ExecStart is not /usr/bin/ehrd"; fail=1; }
file_type=$(od -An -c -N4 "$scratch/root/usr/bin/ehrd" | tr -d ' ')
[ "$file_type" = '177ELF' ] || { echo "FAIL: /usr/bin/ehrd is not an ELF file"; fail=1; }

# The example config parses: ehrd gets past it and stops at the data
# directory (absent here: "data directory ... does not exist"); an error in
# the config would name the config file instead.
example=$scratch/root/usr/share/doc/ehrchain/examples/ehrd.json
rc=0
err=$("$build/node/ehrd" --config "$example" 2>&1) || rc=$?
if [ $rc -ne 1 ] || printf '%s' "$err" | grep -qF "$example"; then
    echo "FAIL: ehrd on the example config (exit $rc): $err"
    fail=1
fi

if [ $fail -ne 0 ]; then exit 1; fi
echo "ok: $(basename "$deb"), $(printf '%s\n' "$files" | wc -l) files, Depends: $(field Depends)"
