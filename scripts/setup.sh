#!/usr/bin/env bash
# Install everything aiorun and its tests need on a fresh Debian machine (run as root).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# skopeo: the peer tool the image save/load interop tests check our archives with.
for pair in nft:nftables ip:iproute2 /bin/busybox:busybox-static skopeo:skopeo unshare:util-linux; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  if [[ $cmd == /* ]]; then [[ -x $cmd ]] || need_apt+=("$pkg")
  else command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg"); fi
done
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q -U pip
fi
.venv/bin/pip install -q -e '.[test]'
# Compile bytecode up front: the machines may set PYTHONDONTWRITEBYTECODE=1, and an editable
# install is otherwise recompiled on every import (that would be counted in start latency).
.venv/bin/python -m compileall -q aiorun plugins >/dev/null
echo "setup: ok ($(.venv/bin/python --version))"
