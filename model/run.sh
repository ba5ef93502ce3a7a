#!/usr/bin/env bash
# run.sh FILE [-DNAME ...] [-- PAN_ARGS]: one check, in a temporary directory:
#   spin -a, gcc -O2 pan.c, ./pan; with TRAIL=1 the counterexample is replayed (spin -t).
# MEMLIM (MB, default 2048) and CFLAGS_PAN (e.g. -DBITSTATE) go to gcc.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
file=$1; shift
defs=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do defs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
cp "$here"/*.pml "$dir"/ && cd "$dir"
spin "${defs[@]}" -a "$file" >/dev/null
gcc -O2 -DSAFETY -DNOFAIR -DNOBOUNDCHECK -DMEMLIM="${MEMLIM:-2048}" ${CFLAGS_PAN:-} -w -o pan pan.c
./pan -m100000 "$@"
if [ "${TRAIL:-0}" = 1 ] && [ -e "$file.trail" ]; then
  spin "${defs[@]}" -t "$file" | grep -vE "^(spin: trail ends|[0-9]+ processes created)" || true
fi
