"""OCI image models: config, manifest, index; image ids.

The image ID is ``sha256:`` + the sha256 of the config JSON *bytes as stored*. Configs we make
are serialised canonically (sorted keys, no spaces); configs we load keep their original
bytes so their ids match what other tools computed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shlex
from datetime import datetime, timezone
from typing import Any

from aiorun.core.timefmt import now_rfc3339nano
from aiorun.errors import InvalidArgument

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

ANNOT_REF_NAME = "org.opencontainers.image.ref.name"
ANNOT_CONTAINERD_NAME = "io.containerd.image.name"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(data: bytes) -> str:
    return "sha256:" + sha256_hex(data)


def now_rfc3339() -> str:
    """Now, as Docker's ``Created`` field shows it (:mod:`aiorun.core.timefmt`)."""
    return now_rfc3339nano()


_FRAC = re.compile(r"(\.\d{1,6})\d*")


def parse_time(s: str | None) -> float:
    """Seconds since the epoch for an RFC 3339 string (0 when missing or unparsable)."""
    if not s:
        return 0.0
    try:
        dt = datetime.fromisoformat(_FRAC.sub(r"\1", s.replace("Z", "+00:00"), count=1))
    except ValueError:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def go_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def new_config(diff_ids: list[str], history: list[dict[str, Any]],
               container_config: dict[str, Any] | None = None,
               created: str | None = None, **extra: Any) -> dict[str, Any]:
    """An image config dict (OCI fields + Docker's ``config``); ``diff_ids`` are bare hex or
    ``sha256:``-prefixed."""
    cfg: dict[str, Any] = {
        "architecture": go_arch(),
        "os": "linux",
        "created": created or now_rfc3339(),
        "config": dict(container_config or {}),
        "rootfs": {"type": "layers",
                   "diff_ids": [d if d.startswith("sha256:") else f"sha256:{d}" for d in diff_ids]},
        "history": history,
    }
    cfg.update(extra)
    return cfg


def validate_config(cfg: Any) -> dict[str, Any]:
    """Check the fields the store relies on; return ``cfg``."""
    if not isinstance(cfg, dict):
        raise InvalidArgument("image config is not a JSON object")
    rootfs = cfg.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or \
            not isinstance(rootfs.get("diff_ids", []), list):
        raise InvalidArgument("image config has no valid rootfs (type layers, diff_ids)")
    for d in rootfs.get("diff_ids") or []:
        if not isinstance(d, str) or not d.startswith("sha256:") or len(d) != 71:
            raise InvalidArgument(f"image config has an invalid diff_id {d!r}")
    hist = cfg.get("history", [])
    if not isinstance(hist, list):
        raise InvalidArgument("image config history is not a list")
    return cfg


def diff_ids_hex(cfg: dict[str, Any]) -> list[str]:
    return [d.removeprefix("sha256:") for d in (cfg.get("rootfs") or {}).get("diff_ids") or []]


def manifest(config_digest: str, config_size: int,
             layers: list[tuple[str, int]], annotations: dict[str, str] | None = None,
             layer_media_type: str = MT_OCI_LAYER) -> dict[str, Any]:
    m: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": layer_media_type, "digest": d, "size": s} for d, s in layers],
    }
    if annotations:
        m["annotations"] = annotations
    return m


# --- `docker import --change` / `commit --change` ------------------------------------------

_CHANGE_KEYS = {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "WORKDIR", "VOLUME",
                "STOPSIGNAL", "ONBUILD"}


def _json_or_shell(arg: str) -> list[str]:
    arg = arg.strip()
    if arg.startswith("["):
        try:
            v = json.loads(arg)
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return v
        except ValueError:
            pass
    return ["/bin/sh", "-c", arg]


def _kv_pairs(arg: str, what: str) -> list[tuple[str, str]]:
    words = shlex.split(arg)
    if words and "=" not in words[0]:
        if len(words) < 2:
            raise InvalidArgument(f"{what} needs a value: {arg!r}")
        return [(words[0], arg.strip()[len(words[0]):].strip())]
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise InvalidArgument(f"{what} expects KEY=VALUE, got {w!r}")
        out.append((k, v))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Apply Dockerfile-style ``--change`` lines to a container config (``config.config``)."""
    c = dict(config)
    for line in changes:
        line = line.strip()
        if not line:
            continue
        key, _, arg = line.partition(" ")
        key = key.upper()
        if key not in _CHANGE_KEYS:
            raise InvalidArgument(f"{key} is not a valid change command")
        if key == "CMD":
            c["Cmd"] = _json_or_shell(arg)
        elif key == "ENTRYPOINT":
            c["Entrypoint"] = _json_or_shell(arg)
        elif key == "ENV":
            env = [e for e in c.get("Env") or []]
            for k, v in _kv_pairs(arg, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            c["Env"] = env
        elif key == "LABEL":
            labels = dict(c.get("Labels") or {})
            labels.update(dict(_kv_pairs(arg, "LABEL")))
            c["Labels"] = labels
        elif key == "EXPOSE":
            ports = dict(c.get("ExposedPorts") or {})
            for p in arg.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            c["ExposedPorts"] = ports
        elif key == "VOLUME":
            vols = dict(c.get("Volumes") or {})
            for v in _json_or_shell(arg) if arg.strip().startswith("[") else arg.split():
                vols[v] = {}
            c["Volumes"] = vols
        elif key == "USER":
            c["User"] = arg.strip()
        elif key == "WORKDIR":
            c["WorkingDir"] = arg.strip()
        elif key == "STOPSIGNAL":
            c["StopSignal"] = arg.strip()
        elif key == "ONBUILD":
            c["OnBuild"] = list(c.get("OnBuild") or []) + [arg.strip()]
    return c
