#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite against the real kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
