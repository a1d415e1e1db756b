#!/usr/bin/env bash
# Install everything aiorun and its tests need on a fresh Debian machine (run as root).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# skopeo: the peer tool the image save/load interop tests check our archives with.
# docker-registry (+ htpasswd from apache2-utils): the real registry the registry tests run.
# docker.io (the docker CLI; dockerd only inside a test's own netns), containerd, runc, crun,
# podman, tini, docker-compose (v1): the real peers the tests drive or compare against.
for pair in nft:nftables ip:iproute2 /bin/busybox:busybox-static skopeo:skopeo unshare:util-linux \
            ssh-agent:openssh-client \
            docker-registry:docker-registry htpasswd:apache2-utils \
            dockerd:docker.io containerd:containerd runc:runc crun:crun podman:podman \
            tini-static:tini docker-compose:docker-compose iptables:iptables; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  if [[ $cmd == /* ]]; then [[ -x $cmd ]] || need_apt+=("$pkg")
  else command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg"); fi
done
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The peers (dockerd, containerd) must not start as host services on install: a host
  # dockerd sets the FORWARD policy to DROP; tests start them themselves (dockerd only in a
  # netns of their own). policy-rc.d answering 101 tells the package scripts "do not start".
  made_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
  [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  # Debian's own python3 ships venv/ensurepip separately.
  "$PY" -m venv --help >/dev/null 2>&1 && "$PY" -c 'import ensurepip' 2>/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
  "$PY" -m venv .venv
  .venv/bin/pip install -q -U pip
fi
# Editable "compat" mode: a plain .pth path entry to this tree (the tests and the CLI run the
# working tree's code). setuptools' default editable mode installs an import hook that costs
# ~12-25 ms at every interpreter start, i.e. on every `aiorun` command. `aiorun_plugins/` is
# the shim that maps the built-in drivers' package onto `plugins/` in this mode.
# (setuptools calls compat mode transitional: if a future one refuses it, fall back to the
# default editable mode, which works the same, only slower to start.)
if ! .venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat 2>/dev/null; then
  .venv/bin/pip install -q -e '.[test]'
fi
# Compile bytecode up front: the machines may set PYTHONDONTWRITEBYTECODE=1, and an editable
# install is otherwise recompiled on every import (that would be counted in start latency).
.venv/bin/python -m compileall -q aiorun plugins aiorun_plugins >/dev/null
echo "setup: ok ($(.venv/bin/python --version))"
