#!/usr/bin/env bash
# test_man_ehrctl.sh EHRCTL MAN.scd - the ehrctl man page lists exactly the
# commands `ehrctl help` lists, each with the same one-line summary, so the
# page and the command table (cli/main.c) cannot drift apart. A page entry is
# a line "*ehrctl NAME*" followed by a tab-indented summary line (scdoc's
# *bold* and backticks are ignored when comparing summaries).
set -euo pipefail
ehrctl=$1
page=$2

# "  NAME<2+ spaces>SUMMARY" lines between "commands:" and the blank line.
help_list=$("$ehrctl" help | awk '/^commands:$/ { on = 1; next } on && /^$/ { exit } on' |
    sed -E 's/^  ([^ ]+( [^ ]+)*)  +(.*)$/\1\t\3/' | tr -d '*`' | sort)
page_list=$(awk '/^\*ehrctl [^*]+\*$/ { name = substr($0, 9, length($0) - 9); getline;
                 sub(/^\t/, ""); print name "\t" $0 }' "$page" | tr -d '*`' | sort)

if [ -z "$help_list" ]; then
    echo "FAIL: no commands parsed from \`ehrctl help\`"
    exit 1
fi
if [ "$help_list" != "$page_list" ]; then
    echo "FAIL: $page and \`ehrctl help\` differ (< help only, > page only):"
    diff <(printf '%s\n' "$help_list") <(printf '%s\n' "$page_list") | grep '^[<>]' || true
    exit 1
fi
echo "ok: $(printf '%s\n' "$help_list" | wc -l) commands, the same in the page and in ehrctl help"
