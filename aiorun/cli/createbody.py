"""``run``/``create`` options and the container-create body they make.

The mapping is a table, :data:`BODY_FIELDS`: (option dests, body path, converter). A row
applies when the user gave any of its options; its converter gets those options' values and
returns the value at the body path (``"HostConfig.Memory"``), or :data:`SKIP` to leave it out.
Converters raise :class:`UsageError` (or the pure parsers' InvalidArgument) on bad input.

On ``aiorun run``'s hot path: the pure parsers (``aiorun.core.spec`` pulls in dataclasses,
~10 ms) are imported only by the converters of the options that need them.
"""

from __future__ import annotations

import os

from aiorun.cli.options import BOOL, LIST, STR, Option, UsageError, integer

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any, Callable

    from aiorun.cli.options import Opts

CREATE_OPTIONS = (
    Option("-d --detach", BOOL, "Run in the background and print the container ID"),
    Option("--rm", BOOL, "Remove the container when it exits"),
    Option("-i --interactive", BOOL, "Keep STDIN open"),
    Option("-t --tty", BOOL, "Allocate a pseudo-TTY"),
    Option("--name", STR, "Assign a name to the container"),
    Option("-e --env", LIST, "Set environment variables (K=V; K alone takes the local value)"),
    Option("--env-file", LIST, "Read environment variables from a file"),
    Option("-w --workdir", STR, "Working directory inside the container"),
    Option("-u --user", STR, "User (format: <name|uid>[:<group|gid>])"),
    Option("-h --hostname", STR, "Hostname (default: the first 12 characters of the ID)"),
    Option("--entrypoint", STR, "Override the image's ENTRYPOINT"),
    Option("-m --memory", STR, "Memory limit (e.g. 512m, 1g)", metavar="bytes"),
    Option("--memory-swap", STR, "Memory plus swap limit ('-1': unlimited swap)",
           metavar="bytes"),
    Option("--cpus", STR, "Number of CPUs (a CPU quota)", metavar="decimal"),
    Option("-c --cpu-shares", STR, "CPU shares (relative weight)", metavar="int"),
    Option("--pids-limit", STR, "Limit the number of processes", metavar="int"),
    Option("--restart", STR, "Restart policy: no | on-failure[:N] | always | unless-stopped"),
    Option("-p --publish", LIST, "Publish a port ([IP:][HOST:]CPORT[/PROTO])"),
    Option("-P --publish-all", BOOL, "Publish all exposed ports to random ports"),
    Option("--expose", LIST, "Expose a port or a range of ports"),
    Option("--network --net", STR, "Connect to a network: bridge (default), none, host or a "
           "network name", dest="network"),
    Option("--network-alias --net-alias", LIST, "Network-scoped alias",
           dest="network_alias"),
    Option("--ip", STR, "IPv4 address on the network"),
    Option("--ip6", STR, "IPv6 address on the network"),
    Option("--mac-address", STR, "MAC address on the network"),
    Option("-v --volume", LIST, "Bind mount or volume (SRC:DST[:OPTS])"),
    Option("--mount", LIST, "Attach a filesystem mount (type=...,source=...,target=...)"),
    Option("--tmpfs", LIST, "Mount a tmpfs directory"),
    Option("--privileged", BOOL, "Lift the security defaults"),
    Option("--cap-add", LIST, "Add Linux capabilities"),
    Option("--cap-drop", LIST, "Drop Linux capabilities"),
    Option("--cgroup-parent", STR, "Parent cgroup of the container"),
    Option("--read-only", BOOL, "Mount the root filesystem read-only"),
    Option("-l --label", LIST, "Set metadata (K=V)"),
    Option("--link", LIST, "Add link to another container (NAME[:ALIAS], default bridge)"),
    Option("--stop-signal", STR, "Signal to stop the container"),
    Option("--stop-timeout", STR, "Seconds to wait for a stop before killing", metavar="int"),
    Option("--dns", LIST, "DNS servers"),
    Option("--dns-search", LIST, "DNS search domains"),
    Option("--dns-option", LIST, "DNS resolver options"),
    Option("--add-host", LIST, "Add a custom host-to-IP mapping (host:ip)"),
    Option("--init", BOOL, "Run an init (tini) as PID 1 that forwards signals and reaps "
           "processes"),
    Option("--ulimit", LIST, "Ulimit options (nofile=1024[:2048])"),
    Option("--shm-size", STR, "Size of /dev/shm (e.g. 128m)", metavar="bytes"),
    Option("--device", LIST, "Add a host device to the container (HOST[:CONTAINER][:rwm])"),
    Option("--pid", STR, "PID namespace to use (host)"),
    Option("--security-opt", LIST, "Security options (seccomp=unconfined, "
           "no-new-privileges)"),
    Option("--group-add", LIST, "Add additional groups to join"),
    Option("--gpus", STR, "Not supported (refused): aiorun has no GPU support"),
    Option("--health-cmd", STR, "Command to run to check health"),
    Option("--health-interval", STR, "Time between running the check (ms|s|m|h)"),
    Option("--health-timeout", STR, "Maximum time to allow one check to run (ms|s|m|h)"),
    Option("--health-start-period", STR, "Start period for the container to initialize "
           "before counting retries (ms|s|m|h)"),
    Option("--health-start-interval", STR, "Time between running the check during the "
           "start period (ms|s|m|h)"),
    Option("--health-retries", STR, "Consecutive failures needed to report unhealthy",
           metavar="int"),
    Option("--no-healthcheck", BOOL, "Disable any container-specified HEALTHCHECK"),
    Option("--log-driver", STR, "Logging driver for the container (json-file)"),
    Option("--log-opt", LIST, "Log driver options (max-size=10m, max-file=3)"),
    Option("-a --attach", LIST, "Attach to STDIN, STDOUT or STDERR (accepted)"),
    Option("--sig-proxy", BOOL, "Proxy received signals to the process (accepted)"),
    Option("--pull", STR, 'Pull image before running ("always", "missing", "never")',
           default="missing"),
    Option("--platform", STR, "Set platform (os[/arch]): of an image pulled, and checked "
           "against the image"),
    Option("-q --quiet", BOOL, "Suppress the pull output"),
)

#: A converter's answer for "leave this field out of the body".
SKIP = object()


# --------------------------------------------------------------------------- converters


def env_files(files: list[str]) -> list[str]:
    """The ``K=V`` lines of ``--env-file`` files (blank lines and ``#`` comments skipped)."""
    out = []
    for f in files:
        try:
            with open(f) as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise UsageError(f"open {f}: {exc.strerror}") from None
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            out.append(line)
    return out


def env_values(items: list[str]) -> list[str]:
    """Docker's CLI: "K" alone takes K from the local environment (dropped when unset)."""
    out = []
    for e in items:
        k, eq, _ = e.partition("=")
        if not k:
            raise UsageError(f"invalid environment variable: {e}")
        if eq:
            out.append(e)
        elif k in os.environ:
            out.append(f"{k}={os.environ[k]}")
    return out


def _env(files: list[str], items: list[str]) -> Any:
    return env_values(env_files(files) + items) or SKIP


def _entrypoint(value: str) -> list[str]:
    return [value] if value else [""]


def _nonempty(value: Any) -> Any:
    return value if value else SKIP


def _copy(values: list[str]) -> Any:
    return list(values) if values else SKIP


def _true(value: bool) -> Any:
    return True if value else SKIP


def _refused(flag: str, why: str) -> Callable[[Any], Any]:
    """An option docker has and aiorun does not: refused here, with the reason, rather
    than sent for the daemon to refuse (or, worse, to ignore)."""
    def convert(value: Any) -> Any:
        from aiorun.errors import InvalidArgument
        raise InvalidArgument(f"{flag} is not supported by aiorun: {why}")
    return convert


def _int(flag: str, empty_is_unset: bool = True) -> Callable[[str], Any]:
    def convert(value: str) -> Any:
        if not value and empty_is_unset:
            return SKIP
        return integer(value, flag)
    return convert


def _labels(items: list[str]) -> Any:
    labels = {}
    for item in items:
        k, _, v = item.partition("=")
        labels[k] = v
    return labels or SKIP


def _memory(value: str) -> Any:
    if not value:
        return SKIP
    from aiorun.core import spec
    from aiorun.errors import InvalidArgument
    try:
        return spec.parse_memory(value)
    except InvalidArgument as exc:
        raise UsageError(f'invalid argument "{value}" for "-m, --memory" flag: '
                         f'{exc.message}') from None


def _memory_swap(value: str) -> Any:
    if not value:
        return SKIP
    from aiorun.core import spec
    return -1 if value == "-1" else spec.parse_memory(value)


def _cpus(value: str) -> Any:
    if not value:
        return SKIP
    from aiorun.core import spec
    from aiorun.errors import InvalidArgument
    try:
        return spec.parse_cpus(value)
    except InvalidArgument:
        raise UsageError(f'invalid argument "{value}" for "--cpus" flag: failed to '
                         f'parse {value} as a rational number') from None


def _restart(value: str) -> Any:
    if not value:
        return SKIP
    from aiorun.core import spec
    from aiorun.errors import InvalidArgument
    try:
        return spec.parse_restart_policy(value)
    except InvalidArgument as exc:
        raise UsageError(exc.message) from None


def _endpoint(aliases: list[str], ip: str | None, ip6: str | None, mac: str | None,
              network: str | None) -> Any:
    """``--network-alias``/``--ip``/``--ip6``/``--mac-address`` configure the endpoint on
    ``--network``."""
    if not (aliases or ip or ip6 or mac):
        return SKIP
    ep: dict[str, Any] = {}
    if aliases:
        ep["Aliases"] = list(aliases)
    if ip or ip6:
        ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", ip), ("IPv6Address", ip6)) if v}
    if mac:
        ep["MacAddress"] = mac
    return {"EndpointsConfig": {network or "bridge": ep}}


def _log_config(driver: str | None, options: list[str]) -> Any:
    config = {}
    for item in options or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid log-opt {item!r}: expected key=value")
        config[key] = value
    return {"Type": driver or "", "Config": config}


def _port_bindings(publish: list[str]) -> Any:
    from aiorun.core import ports
    maps = []
    for p in publish:
        maps += ports.parse_publish(p)
    return ports.to_port_bindings(maps) if maps else SKIP


def _exposed(expose: list[str], publish: list[str]) -> Any:
    """``--expose`` ports and every published one."""
    from aiorun.core import ports
    exposed: dict[str, Any] = {}
    for e in expose:
        for k in ports.parse_expose(e):
            exposed[k] = {}
    bindings = _port_bindings(publish) if publish else SKIP
    if isinstance(bindings, dict):
        for k in bindings:
            exposed[k] = {}
    return exposed or SKIP


def _ulimits(items: list[str]) -> Any:
    from aiorun.core import run_options
    return [run_options.parse_ulimit(u) for u in items] or SKIP


def _devices(items: list[str]) -> Any:
    from aiorun.core import run_options
    return [run_options.parse_device(d) for d in items] or SKIP


def _security_opts(items: list[str]) -> Any:
    """As the docker CLI: ``seccomp=<file>`` sends the profile's content (the daemon
    refuses custom profiles, by name)."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if key == "seccomp" and sep and value not in ("unconfined", "builtin", "default"):
            try:
                with open(value) as fh:
                    value = fh.read()
            except OSError as exc:
                raise UsageError(f"opening seccomp profile ({value}) failed: "
                                 f"{exc.strerror}") from None
            item = f"seccomp={value}"
        out.append(item)
    return out or SKIP


def _shm_size(value: str) -> Any:
    if not value:
        return SKIP
    from aiorun.core import spec
    return spec.parse_memory(value)


def _healthcheck(cmd: str | None, interval: str | None, timeout: str | None,
                 start_period: str | None, start_interval: str | None, retries: str | None,
                 disabled: bool) -> Any:
    """Docker's ``Healthcheck`` from the ``--health-*`` flags (``--no-healthcheck``: NONE)."""
    from aiorun.core import health
    if disabled:
        if cmd or interval or timeout or start_period or start_interval or retries:
            raise UsageError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    out: dict[str, Any] = {}
    if cmd:
        out["Test"] = ["CMD-SHELL", cmd]
    for flag, value, key in (("--health-interval", interval, "Interval"),
                             ("--health-timeout", timeout, "Timeout"),
                             ("--health-start-period", start_period, "StartPeriod"),
                             ("--health-start-interval", start_interval, "StartInterval")):
        if value:
            ns = health.parse_duration(value, flag)
            if ns < 0:
                raise UsageError(f"{flag} cannot be negative")
            out[key] = ns
    if retries:
        out["Retries"] = integer(retries, "--health-retries")
    return out or SKIP


def _mounts(mount: list[str], tmpfs: list[str]) -> list[dict[str, Any]]:
    from aiorun.core import mounts
    return [mounts.parse_mount_flag(m) for m in mount] + \
           [mounts.parse_tmpfs_flag(t) for t in tmpfs]


# --------------------------------------------------------------------------- the table

#: (option dests, body path, converter of those options' values). Applied in this order
#: (it decides which of several bad options is reported first).
BODY_FIELDS: tuple[tuple[tuple[str, ...], str, Callable[..., Any]], ...] = (
    (("entrypoint",), "Entrypoint", _entrypoint),
    (("env_file", "env"), "Env", _env),
    (("workdir",), "WorkingDir", _nonempty),
    (("user",), "User", _nonempty),
    (("hostname",), "Hostname", _nonempty),
    (("stop_signal",), "StopSignal", _nonempty),
    (("stop_timeout",), "StopTimeout", _int("--stop-timeout", empty_is_unset=False)),
    (("label",), "Labels", _labels),
    (("memory",), "HostConfig.Memory", _memory),
    (("memory_swap",), "HostConfig.MemorySwap", _memory_swap),
    (("cpus",), "HostConfig.NanoCpus", _cpus),
    (("cpu_shares",), "HostConfig.CpuShares", _int("--cpu-shares")),
    (("pids_limit",), "HostConfig.PidsLimit", _int("--pids-limit")),
    (("restart",), "HostConfig.RestartPolicy", _restart),
    (("rm",), "HostConfig.AutoRemove", _true),
    (("network",), "HostConfig.NetworkMode", _nonempty),
    (("network_alias", "ip", "ip6", "mac_address", "network"), "NetworkingConfig", _endpoint),
    (("publish",), "HostConfig.PortBindings", _port_bindings),
    (("expose", "publish"), "ExposedPorts", _exposed),
    (("publish_all",), "HostConfig.PublishAllPorts", _true),
    (("volume",), "HostConfig.Binds", _copy),
    (("link",), "HostConfig.Links", _copy),
    (("mount", "tmpfs"), "HostConfig.Mounts", _mounts),
    (("privileged",), "HostConfig.Privileged", _true),
    (("cap_add",), "HostConfig.CapAdd", _copy),
    (("cap_drop",), "HostConfig.CapDrop", _copy),
    (("cgroup_parent",), "HostConfig.CgroupParent", _nonempty),
    (("read_only",), "HostConfig.ReadonlyRootfs", _true),
    (("dns",), "HostConfig.Dns", _copy),
    (("dns_search",), "HostConfig.DnsSearch", _copy),
    (("dns_option",), "HostConfig.DnsOptions", _copy),
    (("add_host",), "HostConfig.ExtraHosts", _copy),
    (("init",), "HostConfig.Init", _true),
    (("ulimit",), "HostConfig.Ulimits", _ulimits),
    (("shm_size",), "HostConfig.ShmSize", _shm_size),
    (("device",), "HostConfig.Devices", _devices),
    (("pid",), "HostConfig.PidMode", _nonempty),
    (("security_opt",), "HostConfig.SecurityOpt", _security_opts),
    (("group_add",), "HostConfig.GroupAdd", _copy),
    (("gpus",), "HostConfig.DeviceRequests",
     _refused("--gpus", "it has no GPU device support")),
    (("health_cmd", "health_interval", "health_timeout", "health_start_period",
      "health_start_interval", "health_retries", "no_healthcheck"), "Healthcheck",
     _healthcheck),
    (("log_driver", "log_opt"), "HostConfig.LogConfig", _log_config),
)


def _given(value: Any) -> bool:
    """Did the user give this option? (An empty string given counts: ``--entrypoint ""``.)"""
    return value is not None and value is not False and value != []


def build_create(opts: Opts, rest: list[str]) -> tuple[dict[str, Any], str | None]:
    """(create body, name) from run/create options and arguments (IMAGE [COMMAND...]).
    UsageError / InvalidArgument on bad input."""
    if not rest:
        raise UsageError('"run" requires at least 1 argument: IMAGE [COMMAND] [ARG...]')
    image, cmd = rest[0], rest[1:]
    body: dict[str, Any] = {"Image": image}
    if cmd:
        body["Cmd"] = cmd
    hc: dict[str, Any] = {}
    attached = not opts.detach
    for dests, path, convert in BODY_FIELDS:
        values = [opts[d] for d in dests]
        if not any(_given(v) for v in values):
            continue
        value = convert(*values)
        if value is SKIP:
            continue
        section, _, key = path.rpartition(".")
        (hc if section == "HostConfig" else body)[key] = value
    # how the CLI talks to the container: from -d/-i/-t, always in the body
    body.update({"Tty": opts.tty, "OpenStdin": opts.interactive,
                 "StdinOnce": opts.interactive and attached,
                 "AttachStdin": opts.interactive and attached,
                 "AttachStdout": attached, "AttachStderr": attached})
    body["HostConfig"] = hc
    if opts.name is not None and not opts.name:
        raise UsageError("invalid empty container name")
    return body, opts.name
