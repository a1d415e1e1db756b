#!/usr/bin/env bash
# The main job: the walkthrough, end to end, on a private state root.
#
#   scripts/demo.sh              # the walkthrough's Flask app on a Debian base pulled from a
#                                # loopback registry (first run: ~1 min more to debootstrap it)
#   DEMO=busybox scripts/demo.sh # the fast path: a busybox httpd stand-in, imported locally
#
# Flask (default):
#   make-base-image.sh (debootstrap, cached) → import + save as a docker-archive → docker-registry
#   on a free loopback port → skopeo copy into it → aiorun pull → build examples/flask-hello
#   (FROM the registry's reference) → run -p 4000:80 → curl localhost:4000 → exec → commit →
#   volumes → clean up.
# busybox: import busybox → build examples/helloworld → the same walkthrough.
#
# Settings (environment): PORT (4000), AIORUN_ROOT/AIORUN_RUN (fresh temporary ones),
# DEMO_SETUP=0 skips scripts/setup.sh; for the tests (tests/integration/test_demo.py):
# DEMO_BASE_ROOTFS (a rootfs tarball used instead of make-base-image.sh's), DEMO_BASE_NAME
# (debian-python:bookworm), DEMO_APP (examples/flask-hello).
# Traffic goes only to 127.0.0.1 and to the container's own address on aiorun's bridge (and,
# on the first Flask run, to Debian's mirror for debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ ${DEMO_SETUP:-1} == 0 ]] || scripts/setup.sh

DEMO=${DEMO:-flask}
case $DEMO in flask|busybox) ;; *) echo "demo: DEMO must be flask or busybox, not '$DEMO'" >&2; exit 2;; esac
export AIORUN_ROOT=${AIORUN_ROOT:-$(mktemp -d /tmp/aiorun-demo-root.XXXXXX)}
export AIORUN_RUN=${AIORUN_RUN:-$(mktemp -d /tmp/aiorun-demo-run.XXXXXX)}
PORT=${PORT:-4000}
A=.venv/bin/aiorun
WORK=$(mktemp -d /tmp/aiorun-demo-work.XXXXXX)   # base.tar, the registry's store, the volume dir
REGISTRY_PID=
STARTED=$SECONDS

# GET a URL, retrying while the server starts (Flask takes a moment); print the body.
fetch() { .venv/bin/python - "$1" <<'PY'
import sys, urllib.request, time
for i in range(300):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().strip()); break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(f"no answer from {sys.argv[1]}")
PY
}
cleanup() {
  set +e
  $A rm -f hello >/dev/null 2>&1
  $A system reset >/dev/null 2>&1
  if [[ -f $AIORUN_RUN/aiorun.pid ]]; then kill "$(cat "$AIORUN_RUN/aiorun.pid")" 2>/dev/null; sleep 1; fi
  if [[ -n $REGISTRY_PID ]]; then kill "$REGISTRY_PID" 2>/dev/null; wait "$REGISTRY_PID" 2>/dev/null; fi
  rm -rf "$AIORUN_ROOT" "$AIORUN_RUN" "$WORK"
}
trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m   \033[2m[+%ds]\033[0m\n' "$*" $((SECONDS - STARTED)); }
note() { printf '\033[33mdemo: %s\033[0m\n' "$*"; }

# Start Debian's docker-registry on a free loopback port, its store under $WORK; sets REGISTRY.
start_registry() {
  local port
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/registry"
  # JSON is YAML.
  cat >"$WORK/registry/config.yml" <<EOF
{"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": true}},
 "storage": {"filesystem": {"rootdirectory": "$WORK/registry/data"}},
 "http": {"addr": "127.0.0.1:$port", "secret": "aiorun-demo"}}
EOF
  docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
  REGISTRY_PID=$!
  REGISTRY=127.0.0.1:$port
  fetch "http://$REGISTRY/v2/" >/dev/null || { cat "$WORK/registry/log"; exit 1; }
  echo "docker-registry (pid $REGISTRY_PID) on $REGISTRY"
}

if [[ $DEMO == flask ]]; then
  APP=${DEMO_APP:-examples/flask-hello}
  BASE_NAME=${DEMO_BASE_NAME:-debian-python:bookworm}
  if [[ -n ${DEMO_BASE_ROOTFS:-} ]]; then
    ROOTFS=$DEMO_BASE_ROOTFS
  else
    step "scripts/make-base-image.sh   # Debian bookworm + python3, Flask, pip by debootstrap (cached)"
    if ! ROOTFS=$(scripts/make-base-image.sh); then
      note "the Debian base image could not be made (above); the busybox walkthrough runs"
      note "without it: DEMO=busybox scripts/demo.sh"
      exit 1
    fi
  fi
  step "aiorun import $(basename "$ROOTFS") $BASE_NAME; aiorun save -o base.tar $BASE_NAME"
  $A import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
     -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' -m "debootstrap rootfs" "$ROOTFS" "$BASE_NAME"
  $A save -o "$WORK/base.tar" "$BASE_NAME"
  $A rmi "$BASE_NAME" >/dev/null   # so that what build uses is what the registry serves
  step "docker-registry serve config.yml   # a private registry on loopback"
  start_registry
  REF=$REGISTRY/$BASE_NAME
  step "skopeo copy docker-archive:base.tar docker://$REF --dest-tls-verify=false"
  skopeo --insecure-policy copy -q docker-archive:"$WORK/base.tar" "docker://$REF" --dest-tls-verify=false
  echo "pushed $REF"
  step "aiorun pull $REF"
  $A pull "$REF"
  rm -f "$WORK/base.tar"
  step "aiorun build --build-arg BASE=$REF -t helloworld $APP"
  $A build --build-arg "BASE=$REF" -t helloworld "$APP"
else
  APP=examples/helloworld
  step "aiorun import busybox.tar busybox   # base image from Debian's busybox-static"
  .venv/bin/python -c 'from aiorun.testing.images import write_busybox_rootfs_tar as w; from pathlib import Path; import sys; w(Path(sys.argv[1]))' "$WORK/busybox.tar"
  $A import "$WORK/busybox.tar" busybox; rm -f "$WORK/busybox.tar"
  step "aiorun build -t helloworld $APP"
  $A build -t helloworld "$APP"
fi

step "aiorun images"; $A images
step "aiorun history helloworld"; $A history helloworld
step "aiorun run -d --name hello -p $PORT:80 helloworld"; $A run -d --name hello -p "$PORT:80" helloworld
step "aiorun ps"; $A ps
step "curl localhost:$PORT"
answer=$(fetch "http://127.0.0.1:$PORT/"); echo "$answer"
hostname=$($A inspect --format '{{.Config.Hostname}}' hello)
[[ $answer == *"Hello World!"*"$hostname"* ]] || { echo "demo: expected 'Hello World!' and the hostname $hostname" >&2; exit 1; }
step "aiorun inspect --format '{{.State.Pid}} {{.NetworkSettings.IPAddress}}' hello"
PID=$($A inspect --format '{{.State.Pid}}' hello); IP=$($A inspect --format '{{.NetworkSettings.IPAddress}}' hello)
echo "$PID $IP"; ls -l /proc/"$PID"/ns | awk '{print $9, $10, $11}'
step "curl $IP:80"; fetch "http://$IP:80/"
step "aiorun exec hello sh -c 'echo exec in \$(hostname); touch /app/new-file'"; $A exec hello sh -c 'echo exec in $(hostname); touch /app/new-file'
step "aiorun commit hello hello:v2"; $A commit hello hello:v2
step "aiorun run --rm hello:v2 ls /app"; $A run --rm hello:v2 ls /app
mkdir -p "$WORK/home"
step "aiorun run --rm -v $WORK/home:/test helloworld sh -c 'echo hi > /test/f'"
$A run --rm -v "$WORK/home:/test" helloworld sh -c 'echo hi > /test/f'; cat "$WORK/home/f"
step "aiorun rm -f hello"; $A rm -f hello
echo; echo "demo ($DEMO): ok in $((SECONDS - STARTED)) s"
