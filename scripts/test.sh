#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh Debian machine with Python 3.11:
# installs Debian's redis-server, systemd (for systemd-analyze) and faketime if missing, makes
# .venv, installs the package with its test extras, checks lint and types, runs pytest.
# Extra arguments go to pytest (and skip lint and types), e.g.
#   scripts/test.sh -m "not real and not e2e"     # the quick subset: fakeredis only
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's packages the tests use: the real redis-server (and redis-cli), systemd-analyze to
# verify the shipped unit, and faketime (libfaketime) for the chaos run's clock jumps
missing=""
[ -x /usr/bin/redis-server ] || missing="$missing redis-server"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v faketime >/dev/null 2>&1 || missing="$missing faketime"
command -v spin >/dev/null 2>&1 || missing="$missing spin"  # tests/test_model.py: SPIN model checker
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"    # compiles SPIN's verifier (pan.c)
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
