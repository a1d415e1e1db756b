#!/usr/bin/env bash
# Set up (idempotent), type-check the package, then run the whole test suite against the real
# kernel. The type check is part of the build: the seams between the engine's parts are
# Protocols (aiorun/core/interfaces.py) and mypy proves the real classes and the test fakes
# satisfy them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "mypy: type-checking aiorun and plugins"
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
