"""An OCI bundle's ``config.json`` → a :class:`Plan` the runtime can carry out (pure).

Follows the OCI runtime spec 1.0–1.1 (config.md, config-linux.md). Unknown properties are
ignored, as the spec requires; a *known* property aiorun-runtime cannot honour is refused
with :class:`ConfigError` naming it (``linux.seccomp``, ``linux.uidMappings``, ...), never
silently dropped. Nothing here touches the system: :func:`plan_from` is table-tested.
"""

from __future__ import annotations

import json
import os
import resource
from dataclasses import dataclass, field
from typing import Any

from ..runtime.cgroup_layout import DEFAULT_DEVICES
from .errors import ConfigError
from ..runtime.spec import CgroupSpec

#: namespace type → clone flag name (config-linux.md "Namespaces")
NAMESPACES = {"pid": "CLONE_NEWPID", "network": "CLONE_NEWNET", "mount": "CLONE_NEWNS",
              "ipc": "CLONE_NEWIPC", "uts": "CLONE_NEWUTS", "cgroup": "CLONE_NEWCGROUP",
              "user": "CLONE_NEWUSER", "time": "CLONE_NEWTIME"}
#: namespaces a path may be given for (joined with setns before the new ones are made)
JOINABLE = ("network", "ipc", "uts", "pid", "cgroup")
#: the mounts the runtime itself always makes (aiorun.runtime.rootfs), by destination/type
STANDARD_MOUNTS = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
                   "/dev/mqueue": "mqueue", "/sys": "sysfs", "/sys/fs/cgroup": "cgroup"}
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")
RLIMITS = {name: getattr(resource, name) for name in dir(resource)
           if name.startswith("RLIMIT_")}
SUPPORTED_MOUNT_OPTIONS = {
    "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "bind", "rbind",
    "private", "rprivate", "slave", "rslave", "noatime", "relatime", "strictatime",
    "nodiratime", "sync", "dirsync", "mand", "nomand", "atime", "diratime", "async"}
REFUSED_MOUNT_OPTIONS = {"shared", "rshared", "unbindable", "runbindable", "tmpcopyup",
                         "idmap", "ridmap"}


@dataclass
class Hook:
    path: str
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    timeout: int | None = None


@dataclass
class Plan:
    """Everything the runtime does for one container, decided before anything is made."""

    rootfs: str
    readonly_rootfs: bool
    args: list[str]
    env: list[str]
    cwd: str
    terminal: bool
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    umask: int | None = None
    #: capability set name ("bounding", "effective", ...) → names ("CAP_CHOWN", ...)
    capabilities: dict[str, list[str]] = field(default_factory=dict)
    no_new_privileges: bool = False
    rlimits: list[tuple[int, int, int]] = field(default_factory=list)
    oom_score_adj: int | None = None
    hostname: str = ""
    domainname: str = ""
    mounts: list[dict[str, Any]] = field(default_factory=list)    # runtime.spec.MountSpec dicts
    sys_readonly: bool = True
    cgroup_readonly: bool = True
    masked_paths: list[str] = field(default_factory=list)
    readonly_paths: list[str] = field(default_factory=list)
    #: namespace type → "" (new) or a path to join; a type not listed is shared with the host
    namespaces: dict[str, str] = field(default_factory=dict)
    cgroups_path: str = ""
    resources: CgroupSpec = field(default_factory=CgroupSpec)
    #: cgroup v1 device rules in order: ("allow"|"deny", "c 1:3 rwm")
    device_rules: list[tuple[str, str]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    sysctl: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, list[Hook]] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    seccomp: bytes | None = None      # the compiled filter (runtime.seccomp_profile)


def load_bundle(bundle: str) -> tuple[dict[str, Any], Plan]:
    """Read ``<bundle>/config.json`` and plan it; ConfigError for anything wrong."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (is {bundle!r} an OCI bundle?)") from None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    try:
        cfg = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a JSON object was expected")
    plan = plan_from(cfg, bundle)
    if not os.path.isdir(plan.rootfs):
        raise ConfigError(f"root.path: rootfs {plan.rootfs} does not exist or is not a "
                          "directory")
    return cfg, plan


def _obj(v: Any, name: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"{name}: an object was expected")
    return v


def _list(v: Any, name: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError(f"{name}: a list was expected")
    return v


def _strs(v: Any, name: str) -> list[str]:
    out = _list(v, name)
    if not all(isinstance(s, str) for s in out):
        raise ConfigError(f"{name}: a list of strings was expected")
    return out


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{name}: an integer was expected")
    return v


def _refuse_set(obj: dict[str, Any], keys: tuple[str, ...], prefix: str) -> None:
    for k in keys:
        v = obj.get(k)
        if v not in (None, "", [], {}, False, 0):
            raise ConfigError(f"{prefix}{k} is not supported by aiorun-runtime")


def plan_from(cfg: dict[str, Any], bundle: str) -> Plan:
    """The pure core of :func:`load_bundle` (``bundle`` only resolves a relative root)."""
    version = cfg.get("ociVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise ConfigError(f"ociVersion: {version!r} is not a 1.x runtime-spec version")
    root = _obj(cfg.get("root"), "root")
    rpath = root.get("path")
    if not isinstance(rpath, str) or not rpath:
        raise ConfigError("root.path: missing")
    proc = _obj(cfg.get("process"), "process")
    if not proc:
        raise ConfigError("process: missing (aiorun-runtime needs a process to run)")
    _refuse_set(proc, ("commandLine", "ioPriority", "scheduler", "execCPUAffinity"),
                "process.")
    args = _strs(proc.get("args"), "process.args")
    if not args:
        raise ConfigError("process.args: must name the command to run")
    cwd = proc.get("cwd") or "/"
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise ConfigError(f"process.cwd: {cwd!r} is not an absolute path")
    user = _obj(proc.get("user"), "process.user")
    if user.get("username"):
        raise ConfigError("process.user.username is for Windows; give uid and gid")
    plan = Plan(
        rootfs=os.path.normpath(os.path.join(bundle, rpath)),
        readonly_rootfs=bool(root.get("readonly")),
        args=args, env=_strs(proc.get("env"), "process.env"), cwd=cwd,
        terminal=bool(proc.get("terminal")),
        uid=_int(user.get("uid", 0), "process.user.uid"),
        gid=_int(user.get("gid", 0), "process.user.gid"),
        additional_gids=[_int(g, "process.user.additionalGids")
                         for g in _list(user.get("additionalGids"),
                                        "process.user.additionalGids")],
        umask=None if user.get("umask") is None else _int(user["umask"], "process.user.umask"),
        no_new_privileges=bool(proc.get("noNewPrivileges")),
        hostname=str(cfg.get("hostname") or ""), domainname=str(cfg.get("domainname") or ""),
        annotations={str(k): str(v) for k, v in _obj(cfg.get("annotations"),
                                                     "annotations").items()},
    )
    caps = _obj(proc.get("capabilities"), "process.capabilities")
    for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        names = _strs(caps.get(kind), f"process.capabilities.{kind}")
        for n in names:
            if not n.startswith("CAP_"):
                raise ConfigError(f"process.capabilities.{kind}: unknown capability {n!r}")
        plan.capabilities[kind] = names
    for i, rl in enumerate(_list(proc.get("rlimits"), "process.rlimits")):
        rl = _obj(rl, f"process.rlimits[{i}]")
        rtype = rl.get("type")
        if not isinstance(rtype, str) or rtype not in RLIMITS:
            raise ConfigError(f"process.rlimits[{i}].type: unknown rlimit {rtype!r}")
        plan.rlimits.append((RLIMITS[rtype], _int(rl.get("soft"), f"process.rlimits[{i}].soft"),
                             _int(rl.get("hard"), f"process.rlimits[{i}].hard")))
    if proc.get("oomScoreAdj") is not None:
        plan.oom_score_adj = _int(proc["oomScoreAdj"], "process.oomScoreAdj")
    _plan_hooks(cfg, plan)
    linux = _obj(cfg.get("linux"), "linux")
    _refuse_set(linux, ("uidMappings", "gidMappings", "intelRdt", "personality",
                        "timeOffsets", "memoryPolicy"), "linux.")
    _plan_namespaces(linux, plan)
    _plan_mounts(cfg, plan)
    if linux.get("seccomp"):
        plan.seccomp = _plan_seccomp(_obj(linux["seccomp"], "linux.seccomp"))
    _plan_lsm(proc, linux)
    prop = linux.get("rootfsPropagation") or ""
    if prop not in ("", "private", "rprivate", "slave", "rslave"):
        raise ConfigError(f"linux.rootfsPropagation: {prop!r} is not supported "
                          "(private or slave only)")
    plan.masked_paths = _strs(linux.get("maskedPaths"), "linux.maskedPaths")
    plan.readonly_paths = _strs(linux.get("readonlyPaths"), "linux.readonlyPaths")
    plan.sysctl = {str(k): str(v) for k, v in _obj(linux.get("sysctl"),
                                                   "linux.sysctl").items()}
    for k in plan.sysctl:
        if "/" in k or ".." in k:
            raise ConfigError(f"linux.sysctl: invalid name {k!r}")
    cg = linux.get("cgroupsPath") or ""
    if not isinstance(cg, str) or ":" in cg or any(p in (".", "..") for p in cg.split("/")):
        raise ConfigError(f"linux.cgroupsPath: {cg!r} is not a cgroupfs path "
                          "(systemd slices are not supported)")
    plan.cgroups_path = cg
    _plan_devices(linux, plan)
    _plan_resources(_obj(linux.get("resources"), "linux.resources"), plan)
    return plan


#: the OCI architecture names the x86_64 filter covers
SECCOMP_ARCHES = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}


def _plan_seccomp(prof: dict[str, Any]) -> bytes:
    """``linux.seccomp`` → the BPF program, compiled by the daemon's compiler
    (:mod:`aiorun.runtime.seccomp_profile`: the OCI profile is Docker's format without
    ``includes``/``excludes``). Other architectures than x86 are refused by name, as are
    what a filter alone cannot do (a notify listener, filter flags)."""
    import json
    import platform
    from ..runtime.seccomp_profile import ProfileError, compile_profile
    if prof.get("listenerPath") or prof.get("listenerMetadata"):
        raise ConfigError("linux.seccomp.listenerPath: seccomp notify is not supported")
    if prof.get("flags"):
        raise ConfigError(f"linux.seccomp.flags: {prof['flags']} not supported")
    arches = set(prof.get("architectures") or [])
    if arches - SECCOMP_ARCHES:
        raise ConfigError(f"linux.seccomp.architectures: {sorted(arches - SECCOMP_ARCHES)} "
                          "not supported (x86_64, x86, x32)")
    if platform.machine() != "x86_64":
        raise ConfigError("linux.seccomp: profiles are compiled for x86_64 only")
    try:
        # every capability: OCI profiles carry no capability conditions
        return compile_profile(json.dumps(prof), kept_caps=(1 << 64) - 1)
    except ProfileError as e:
        raise ConfigError(f"linux.seccomp: {e}") from None


def _lsm_enabled(name: str) -> bool:
    try:
        with open("/sys/kernel/security/lsm") as f:
            return name in f.read().split(",")
    except OSError:
        return False


def _plan_lsm(proc: dict[str, Any], linux: dict[str, Any]) -> None:
    """AppArmor/SELinux labels are accepted where the host has no such LSM (nothing to
    apply, as runc does there) and refused where it has one: aiorun-runtime cannot apply
    them."""
    for where, value, lsm in (("process.apparmorProfile", proc.get("apparmorProfile"),
                               "apparmor"),
                              ("process.selinuxLabel", proc.get("selinuxLabel"), "selinux"),
                              ("linux.mountLabel", linux.get("mountLabel"), "selinux")):
        if value and _lsm_enabled(lsm):
            raise ConfigError(f"{where}: {lsm} is active on this host and aiorun-runtime "
                              "cannot apply labels")


def _plan_hooks(cfg: dict[str, Any], plan: Plan) -> None:
    hooks = _obj(cfg.get("hooks"), "hooks")
    for kind, items in hooks.items():
        if kind not in HOOK_KINDS:
            continue                      # unknown property: ignored, as the spec says
        for i, h in enumerate(_list(items, f"hooks.{kind}")):
            h = _obj(h, f"hooks.{kind}[{i}]")
            path = h.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(f"hooks.{kind}[{i}].path: an absolute path is required")
            timeout = h.get("timeout")
            if timeout is not None and (_int(timeout, f"hooks.{kind}[{i}].timeout") <= 0):
                raise ConfigError(f"hooks.{kind}[{i}].timeout: must be positive")
            plan.hooks.setdefault(kind, []).append(
                Hook(path, _strs(h.get("args"), f"hooks.{kind}[{i}].args"),
                     _strs(h.get("env"), f"hooks.{kind}[{i}].env"), timeout))


def _plan_namespaces(linux: dict[str, Any], plan: Plan) -> None:
    for i, ns in enumerate(_list(linux.get("namespaces"), "linux.namespaces")):
        ns = _obj(ns, f"linux.namespaces[{i}]")
        kind = ns.get("type")
        if kind not in NAMESPACES:
            raise ConfigError(f"linux.namespaces[{i}].type: unknown namespace type {kind!r}")
        if kind in ("user", "time"):
            raise ConfigError(f"linux.namespaces: a {kind} namespace is not supported by "
                              "aiorun-runtime")
        if kind in plan.namespaces:
            raise ConfigError(f"linux.namespaces: {kind} listed twice")
        path = ns.get("path") or ""
        if path and kind not in JOINABLE:
            raise ConfigError(f"linux.namespaces: joining a {kind} namespace by path is not "
                              "supported")
        plan.namespaces[kind] = path
    if "mount" not in plan.namespaces:
        raise ConfigError("linux.namespaces: a mount namespace is required")
    if plan.hostname and "uts" not in plan.namespaces:
        raise ConfigError("hostname: setting it needs a new uts namespace")


def _plan_mounts(cfg: dict[str, Any], plan: Plan) -> None:
    for i, m in enumerate(_list(cfg.get("mounts"), "mounts")):
        m = _obj(m, f"mounts[{i}]")
        dest = m.get("destination")
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise ConfigError(f"mounts[{i}].destination: an absolute path is required")
        dest = os.path.normpath(dest)
        opts = _strs(m.get("options"), f"mounts[{i}].options")
        kind = m.get("type") or ""
        if "bind" in opts or "rbind" in opts:
            kind = "bind"
        std = STANDARD_MOUNTS.get(dest)
        if std is not None and (std == kind or (std, kind) == ("cgroup", "cgroup2")):
            if dest == "/sys":
                plan.sys_readonly = "ro" in opts
            elif dest == "/sys/fs/cgroup":
                plan.cgroup_readonly = "ro" in opts
            continue                      # made by the runtime itself (see docs/oci-runtime)
        for o in opts:
            if o in REFUSED_MOUNT_OPTIONS:
                raise ConfigError(f"mounts[{i}] ({dest}): option {o!r} is not supported")
        source = m.get("source") or ""
        if kind == "bind" and not str(source).startswith("/"):
            raise ConfigError(f"mounts[{i}] ({dest}): a bind mount needs an absolute source")
        if not kind:
            raise ConfigError(f"mounts[{i}] ({dest}): type is missing")
        plan.mounts.append({"destination": dest, "type": kind, "source": str(source),
                            "options": [o for o in opts if o not in ("rw",)],
                            "readonly": "ro" in opts})


def _plan_devices(linux: dict[str, Any], plan: Plan) -> None:
    for i, d in enumerate(_list(linux.get("devices"), "linux.devices")):
        d = _obj(d, f"linux.devices[{i}]")
        path, kind = d.get("path"), d.get("type")
        if not isinstance(path, str) or not path.startswith("/dev/"):
            raise ConfigError(f"linux.devices[{i}].path: must be under /dev")
        if kind not in ("c", "b", "u", "p"):
            raise ConfigError(f"linux.devices[{i}].type: {kind!r} (c, b, u or p)")
        plan.devices.append({
            "path": os.path.normpath(path), "type": kind,
            "major": _int(d.get("major", 0), f"linux.devices[{i}].major"),
            "minor": _int(d.get("minor", 0), f"linux.devices[{i}].minor"),
            "mode": _int(d.get("fileMode", 0o666), f"linux.devices[{i}].fileMode"),
            "uid": _int(d.get("uid", 0), f"linux.devices[{i}].uid"),
            "gid": _int(d.get("gid", 0), f"linux.devices[{i}].gid")})


def device_rule(d: dict[str, Any], where: str) -> tuple[str, str]:
    """One ``linux.resources.devices`` entry → ("allow"|"deny", "c 1:3 rwm") for v1."""
    kind = d.get("type") or "a"
    if kind not in ("a", "c", "b"):
        raise ConfigError(f"{where}.type: {kind!r} (a, c or b)")
    major = "*" if d.get("major") in (None, -1) else str(_int(d["major"], f"{where}.major"))
    minor = "*" if d.get("minor") in (None, -1) else str(_int(d["minor"], f"{where}.minor"))
    access = d.get("access") or "rwm"
    if not isinstance(access, str) or not access or set(access) - set("rwm"):
        raise ConfigError(f"{where}.access: {access!r} (letters of rwm)")
    rule = "a" if kind == "a" and major == minor == "*" else f"{kind} {major}:{minor} {access}"
    return ("allow" if d.get("allow") else "deny", rule)


def _plan_resources(res: dict[str, Any], plan: Plan) -> None:
    _refuse_set(res, ("blockIO", "hugepageLimits", "network", "rdma", "unified"),
                "linux.resources.")
    mem = _obj(res.get("memory"), "linux.resources.memory")
    _refuse_set(mem, ("reservation", "kernel", "kernelTCP", "swappiness", "disableOOMKiller",
                      "useHierarchy", "checkBeforeUpdate"), "linux.resources.memory.")
    cpu = _obj(res.get("cpu"), "linux.resources.cpu")
    _refuse_set(cpu, ("cpus", "mems", "realtimeRuntime", "realtimePeriod", "idle", "burst"),
                "linux.resources.cpu.")
    pids = _obj(res.get("pids"), "linux.resources.pids")
    spec = CgroupSpec()
    if mem.get("limit") is not None:
        spec.memory = _int(mem["limit"], "linux.resources.memory.limit")
        if spec.memory <= 0:
            spec.memory = None            # -1 / 0: no limit
    if mem.get("swap") is not None:
        spec.memory_swap = _int(mem["swap"], "linux.resources.memory.swap")
    if cpu.get("shares"):
        spec.cpu_shares = _int(cpu["shares"], "linux.resources.cpu.shares")
    quota = cpu.get("quota")
    if quota is not None and _int(quota, "linux.resources.cpu.quota") > 0:
        period = cpu.get("period") or 100000
        spec.cpus = quota / _int(period, "linux.resources.cpu.period")
    if pids.get("limit") is not None:
        limit = _int(pids["limit"], "linux.resources.pids.limit")
        spec.pids = limit if limit > 0 else None
    plan.resources = spec
    plan.device_rules = [device_rule(_obj(d, f"linux.resources.devices[{i}]"),
                                     f"linux.resources.devices[{i}]")
                         for i, d in enumerate(_list(res.get("devices"),
                                                     "linux.resources.devices"))]
    if plan.device_rules:
        # As runc: the nodes the config creates, then the standard devices every container
        # gets (null, zero, full, random, urandom, tty, console, ptmx, pts, tun, mknod).
        plan.device_rules += [("allow", f"{d['type'] if d['type'] != 'u' else 'c'} "
                                        f"{d['major']}:{d['minor']} rwm")
                              for d in plan.devices if d["type"] in ("c", "b", "u")]
        plan.device_rules += [("allow", r) for r in DEFAULT_DEVICES]
