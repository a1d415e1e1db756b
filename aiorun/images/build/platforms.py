"""BuildKit's predefined platform ARGs and ``FROM --platform``.

aiorun builds for the platform it runs on: the target platform is the build platform. The
values are in the global (pre-``FROM``) scope, so ``FROM`` lines can use them; inside a stage
a ``ARG TARGETARCH`` (no value) brings one in, as in BuildKit.
"""

from __future__ import annotations

import platform

from aiorun.images.oci import go_arch

#: The names BuildKit predefines.
PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
                 "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT")


def host_platform() -> tuple[str, str, str]:
    """``(os, arch, variant)`` of this machine, in Go's names (``linux``, ``amd64``, ``""``)."""
    arch = go_arch()
    variant = "v7" if arch == "arm" and platform.machine() == "armv7l" else ""
    return "linux", arch, variant


def platform_string(os_: str, arch: str, variant: str) -> str:
    return "/".join(p for p in (os_, arch, variant) if p)


def platform_args() -> dict[str, str]:
    """The predefined platform ARGs and their values."""
    os_, arch, variant = host_platform()
    plat = platform_string(os_, arch, variant)
    out: dict[str, str] = {}
    for side in ("TARGET", "BUILD"):
        out.update({f"{side}PLATFORM": plat, f"{side}OS": os_, f"{side}ARCH": arch,
                    f"{side}VARIANT": variant})
    return out


def check_from_platform(value: str) -> str | None:
    """The problem with ``FROM --platform=<value>`` (already expanded), or None: aiorun
    builds only for its own platform."""
    os_, arch, variant = host_platform()
    want = value.strip().lower()
    if want in (platform_string(os_, arch, variant), f"{os_}/{arch}"):
        return None
    return (f"FROM --platform={value}: aiorun builds only for this machine's platform "
            f"({platform_string(os_, arch, variant)})")
