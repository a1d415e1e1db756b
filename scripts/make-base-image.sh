#!/usr/bin/env bash
# Make a Debian base image's root filesystem with debootstrap, the stand-in for the
# walkthrough's `python:2.7-slim` (public registries are not reachable here; Debian's mirror is).
#
#   scripts/make-base-image.sh            # prints the path of the rootfs tarball (stdout)
#
# The result is a gzip'd rootfs tar for `aiorun import` (scripts/demo.sh imports it, saves it
# as a docker-archive and pushes that to a loopback registry). It is cached: a second run with
# the same release, variant, packages and mirror only prints the path.
#
# Settings (environment):
#   RELEASE   Debian release                       (bookworm)
#   VARIANT   debootstrap variant                  (minbase)
#   PACKAGES  extra packages, comma-separated      (python3,python3-flask,python3-pip)
#   MIRROR    Debian mirror                        (http://deb.debian.org/debian)
#   CACHE_DIR where the tarballs are kept          (/var/cache/aiorun-demo; ~/.cache/aiorun-demo
#                                                   when that is not writable)
#   CACHED_ONLY=1  only print the cached tarball's path; exit 3 (no debootstrap) if there is none
#
# Why python3-pip: the walkthrough's Dockerfile runs `pip install -r requirements.txt`. Flask
# comes from Debian (python3-flask), so pip finds it already satisfied and needs no network.
# Debian marks its Python "externally managed" (PEP 668), which makes pip refuse any install
# before looking at the requirements; the official python images (built from source) carry no
# such marker, so this image drops it too.
#
# Needs root (debootstrap); installs the debootstrap package if it is missing.
set -euo pipefail

RELEASE=${RELEASE:-bookworm}
VARIANT=${VARIANT:-minbase}
PACKAGES=${PACKAGES:-python3,python3-flask,python3-pip}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [[ -z ${CACHE_DIR:-} ]]; then
  CACHE_DIR=/var/cache/aiorun-demo
  mkdir -p "$CACHE_DIR" 2>/dev/null && [[ -w $CACHE_DIR ]] || CACHE_DIR=$HOME/.cache/aiorun-demo
fi

say() { printf 'make-base-image: %s\n' "$*" >&2; }

# The cache key: everything that changes the tree. The package list is sorted so that the
# order in which it is given does not matter.
sorted_packages=$(tr ',' '\n' <<<"$PACKAGES" | sed '/^$/d' | sort -u | paste -sd, -)
key=$(printf '%s\n' "$RELEASE" "$VARIANT" "$sorted_packages" "$MIRROR" | sha256sum | cut -c1-12)
out=$CACHE_DIR/debian-$RELEASE-$VARIANT-$key.rootfs.tar.gz

if [[ -s $out ]]; then
  say "cached: $out ($(du -h "$out" | cut -f1); release $RELEASE, packages $sorted_packages)"
  echo "$out"
  exit 0
fi

if [[ ${CACHED_ONLY:-0} == 1 ]]; then
  say "no cached tarball $out (run scripts/make-base-image.sh once to make it)"
  exit 3
fi
if ((EUID != 0)); then
  say "debootstrap needs root (run as root, or put a cached tarball at $out)"
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq debootstrap >/dev/null
fi

mkdir -p "$CACHE_DIR"
work=$(mktemp -d "$CACHE_DIR/.build.XXXXXX")
cleanup() {
  # debootstrap mounts proc and sys in the target while it configures packages; an interrupted
  # run can leave them, and rm must never walk into them.
  awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r |
    while IFS= read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
root=$work/rootfs

started=$SECONDS
say "debootstrap $RELEASE ($VARIANT) + $sorted_packages from $MIRROR into $root"
say "(first run only: downloads ~60 MB of packages; the result is cached in $CACHE_DIR)"
# debootstrap's own "I: Retrieving/Validating/Unpacking/Configuring ..." lines are the progress,
# each with the elapsed time so a slow mirror shows as such: on a terminal one status line
# rewritten in place (warnings and errors stay), otherwise plain lines (~600 of them).
progress() {
  local line tty=0 status_open=0
  [[ -t 2 ]] && tty=1
  while IFS= read -r line; do
    if ((tty)) && [[ $line == I:* ]]; then
      printf '\r\033[K  [%4ds] %.100s' $((SECONDS - started)) "$line" >&2
      status_open=1
    else
      ((status_open)) && printf '\r\033[K' >&2
      printf '  [%4ds] %s\n' $((SECONDS - started)) "$line" >&2
      status_open=0
    fi
  done
  ((status_open)) && printf '\n' >&2
  return 0
}
if ! debootstrap --variant="$VARIANT" --include="$sorted_packages" "$RELEASE" "$root" "$MIRROR" 2>&1 |
     progress
then
  say "debootstrap failed (see the lines above)"
  exit 1
fi

say "trimming the tree (apt caches, device nodes, PEP 668 marker)"
# A container gets its own /dev, /proc and /sys; an image carries only the empty directories.
find "$root/dev" -mindepth 1 -delete
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
       "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
# The host's resolver configuration debootstrap copied in: the engine provides its own.
: >"$root/etc/resolv.conf"
# Same hostname file as Docker's images: the engine writes the container's own.
rm -f "$root/etc/hostname"

say "packing $(du -sh "$root" | cut -f1) into $out"
tar --numeric-owner --xattrs -C "$root" -czf "$work/rootfs.tar.gz" .
mv "$work/rootfs.tar.gz" "$out"
say "done in $((SECONDS - started)) s: $out ($(du -h "$out" | cut -f1))"
echo "$out"
