"""HostConfig / Config → what the runtime is asked for: cgroup limits, environment, security.

Pure functions over Docker-shaped dicts. The engine turns the results into the runtime's spec
dataclasses (``CgroupSpec(**cgroup_limits(hc))``): ``core`` stays below the runtime layer.
The cgroup limits are computed here once, for a start and for ``docker update`` alike.
"""

from __future__ import annotations

from typing import Any

from aiorun.core.spec import process_env
from aiorun.core.run_options import security_opts, unmasked_paths

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: The HostConfig keys ``docker update`` may change.
UPDATABLE = ("Memory", "MemorySwap", "NanoCpus", "CpuQuota", "CpuPeriod", "CpuShares",
             "PidsLimit", "RestartPolicy")


def cpus_of(hc: dict[str, Any]) -> float | None:
    """CPU quota in cores: ``NanoCpus`` (``--cpus``), else ``CpuQuota / CpuPeriod``."""
    nano = hc.get("NanoCpus") or 0
    if nano:
        return float(nano / 1e9)
    if hc.get("CpuQuota") and hc.get("CpuPeriod"):
        return float(hc["CpuQuota"] / hc["CpuPeriod"])
    return None


def cgroup_limits(hc: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the runtime's ``CgroupSpec`` (the parent aside); 0 = none."""
    return {"memory": hc.get("Memory") or None, "memory_swap": hc.get("MemorySwap") or None,
            "cpus": cpus_of(hc), "cpu_shares": hc.get("CpuShares") or None,
            "pids": hc.get("PidsLimit") or None}


def updated_host_config(hc: dict[str, Any], body: dict[str, Any]) -> tuple[dict[str, Any],
                                                                            dict[str, Any]]:
    """``docker update``: (merged HostConfig, the changes taken from ``body``).

    ``--cpus`` and ``--cpu-quota`` replace each other, as in Docker. The result still has to
    be validated (the engine runs it through the create-time merge)."""
    changes = {k: body[k] for k in UPDATABLE if body.get(k) not in (None, "")}
    merged = dict(hc)
    merged.update(changes)
    if "NanoCpus" in changes:
        merged["CpuQuota"] = merged["CpuPeriod"] = 0
    elif "CpuQuota" in changes:
        merged["NanoCpus"] = 0
    return merged, changes


def container_env(cfg: dict[str, Any]) -> list[str]:
    """PID 1's environment: Docker's defaults (PATH, HOSTNAME, TERM with a tty) first, then
    ``Config.Env``; a default the config sets itself is not added, and a bare "K" in the
    config unsets K (:func:`aiorun.core.spec.process_env`)."""
    env = list(cfg.get("Env") or [])
    keys = {e.partition("=")[0] for e in env}
    extra = [] if "PATH" in keys else [f"PATH={DEFAULT_PATH}"]
    extra.append(f"HOSTNAME={cfg.get('Hostname', '')}")
    if cfg.get("Tty") and "TERM" not in keys:
        extra.append("TERM=xterm")
    return process_env(extra, env)


def security_options(hc: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the runtime's ``SecuritySpec``."""
    privileged = bool(hc.get("Privileged"))
    opts = security_opts(hc.get("SecurityOpt") or [])
    return {"privileged": privileged, "cap_add": list(hc.get("CapAdd") or []),
            "cap_drop": list(hc.get("CapDrop") or []), "no_new_privileges": not privileged or opts["no_new_privileges"],
            "readonly_rootfs": bool(hc.get("ReadonlyRootfs")), "seccomp": opts["seccomp"],
            "group_add": list(hc.get("GroupAdd") or []),
            "unmasked_paths": unmasked_paths(hc)}
