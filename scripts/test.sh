#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh Debian machine with Python 3.11:
# installs redis-server and faketime (Debian's packages) if missing, makes .venv, installs the package
# with its test extras, runs pytest. Extra arguments go to pytest, e.g.
#   scripts/test.sh -k fake -m "not e2e"     # the quick subset: fakeredis only, no processes
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server for the real-server tests; faketime (libfaketime) for the chaos run's clock jumps
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v faketime >/dev/null 2>&1 || missing="$missing faketime"
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi

python=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,dev]'
if [ "$#" -eq 0 ]; then  # the full run also checks lint and types
  .venv/bin/ruff check coordinator tests
  .venv/bin/mypy coordinator
fi
exec .venv/bin/python -m pytest "$@"
