#!/usr/bin/env bash
# Installs what is missing, then runs the whole test suite: unit tests and the end-to-end
# tests that drive a real lab. Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup.sh"
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$@"
