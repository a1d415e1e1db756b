#!/usr/bin/env bash
# The main job: the walkthrough, end to end, on a private state root.
#   build -t helloworld . → images → run -p 4000:80 → ps → curl localhost:4000 → inspect IP →
#   curl IP:80 → exec → commit → volumes → clean up.
# Traffic goes only to 127.0.0.1 and to the container's own address on aiorun's bridge.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export AIORUN_ROOT=${AIORUN_ROOT:-$(mktemp -d /tmp/aiorun-demo-root.XXXXXX)}
export AIORUN_RUN=${AIORUN_RUN:-$(mktemp -d /tmp/aiorun-demo-run.XXXXXX)}
PORT=${PORT:-4000}
A=.venv/bin/aiorun
fetch() { .venv/bin/python - "$1" <<'PY'
import sys, urllib.request, time
for i in range(50):
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
  $A rm -f hello hello2 >/dev/null 2>&1
  $A system reset >/dev/null 2>&1
  if [[ -f $AIORUN_RUN/aiorun.pid ]]; then kill "$(cat "$AIORUN_RUN/aiorun.pid")" 2>/dev/null; sleep 1; fi
  rm -rf "$AIORUN_ROOT" "$AIORUN_RUN" /tmp/aiorun-demo-home
}
trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "aiorun import busybox.tar busybox   # base image from Debian's busybox-static"
.venv/bin/python -c 'from aiorun.testing.images import write_busybox_rootfs_tar as w; from pathlib import Path; w(Path("/tmp/aiorun-demo-busybox.tar"))'
$A import /tmp/aiorun-demo-busybox.tar busybox; rm -f /tmp/aiorun-demo-busybox.tar
step "aiorun build -t helloworld examples/helloworld"
$A build -t helloworld examples/helloworld
step "aiorun images"; $A images
step "aiorun history helloworld"; $A history helloworld
step "aiorun run -d --name hello -p $PORT:80 helloworld"; $A run -d --name hello -p "$PORT:80" helloworld
step "aiorun ps"; $A ps
step "curl localhost:$PORT"; fetch "http://127.0.0.1:$PORT/"
step "aiorun inspect --format '{{.State.Pid}} {{.NetworkSettings.IPAddress}}' hello"
PID=$($A inspect --format '{{.State.Pid}}' hello); IP=$($A inspect --format '{{.NetworkSettings.IPAddress}}' hello)
echo "$PID $IP"; ls -l /proc/"$PID"/ns | awk '{print $9, $10, $11}'
step "curl $IP:80"; fetch "http://$IP:80/"
step "aiorun exec hello sh -c 'echo exec in \$(hostname); touch /app/new-file'"; $A exec hello sh -c 'echo exec in $(hostname); touch /app/new-file'
step "aiorun commit hello hello:v2"; $A commit hello hello:v2
step "aiorun run --rm hello:v2 ls /app"; $A run --rm hello:v2 ls /app
step "aiorun run --rm -v /tmp/aiorun-demo-home:/test busybox sh -c 'echo hi > /test/f'"
mkdir -p /tmp/aiorun-demo-home; $A run --rm -v /tmp/aiorun-demo-home:/test busybox sh -c 'echo hi > /test/f'; cat /tmp/aiorun-demo-home/f
step "aiorun rm -f hello"; $A rm -f hello
echo; echo "demo: ok"
