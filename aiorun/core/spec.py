"""Validate a Docker ``POST /containers/create`` body and merge it with the image config.

Pure and I/O free. :func:`merge` returns a :class:`CreateSpec` holding the Docker-shaped
``Config`` and ``HostConfig`` exactly as ``inspect`` shows them, plus the argv of PID 1.
Every problem raises :class:`~aiorun.errors.InvalidArgument` with a message naming the bad
value, before anything is created.

Docker's merge rules (daemon/images: ``merge``):

* no Entrypoint in the request (absent/null) → the image's Entrypoint; an explicit empty
  Entrypoint (``[]`` or ``[""]``) resets it;
* an empty Cmd takes the image's Cmd, but only when the request did not set an Entrypoint;
* Env: image entries, then request entries replace by key (``"K"`` alone deletes ``K``);
* WorkingDir, User, StopSignal, Labels, ExposedPorts, Volumes: request wins / union.

Also here: memory strings ("512m", "1g"), ``--cpus``, restart policies, signal names,
container names and docker-style random names.
"""

from __future__ import annotations

import copy
import os
import random
import re
import signal as _signal
from dataclasses import dataclass, field
from typing import Any, Iterable

from aiorun.core.health import check_healthcheck, merge_healthcheck
from aiorun.core.validate import check_name, normalized_log_config
from aiorun.errors import InvalidArgument

MIN_MEMORY = 6 * 1024 * 1024          # Docker's minimum memory limit


# --------------------------------------------------------------------------- names

def validate_name(name: str) -> str:
    """Return the name without its leading "/"; InvalidArgument when not Docker-valid."""
    if not isinstance(name, str):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    check_name(name)
    return name.lstrip("/")


_LEFT = """admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold
boring brave busy charming clever compassionate competent condescending confident cool cranky
crazy dazzling determined distracted dreamy eager ecstatic elastic elated elegant eloquent epic
exciting fervent festive flamboyant focused friendly frosty funny gallant gifted goofy gracious
great happy hardcore heuristic hopeful hungry infallible inspiring intelligent interesting jolly
jovial keen kind laughing loving lucid magical modest musing mystifying naughty nervous nice
nifty nostalgic objective optimistic peaceful pedantic pensive practical priceless quirky quizzical
recursing relaxed reverent romantic sad serene sharp silly sleepy stoic strange stupefied
suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant vigorous wizardly
wonderful xenodochial youthful zealous zen""".split()
_RIGHT = """agnesi albattani allen almeida antonelli archimedes ardinghelli aryabhata austin
babbage banach bardeen bartik bassi beaver bell benz bhabha bhaskara black blackburn blackwell
bohr booth borg bose bouman boyd brahmagupta brattain brown buck burnell cannon carson cartwright
cerf chandrasekhar chaplygin chatelet chatterjee chaum chebyshev clarke cohen colden cori cray
curie darwin davinci dewdney dhawan diffie dijkstra dirac driscoll dubinsky easley edison einstein
elbakyan elgamal elion ellis engelbart euclid euler faraday feistel fermat fermi feynman franklin
gagarin galileo galois ganguly gates gauss germain goldberg goldstine goldwasser golick goodall
gould greider grothendieck haibt hamilton haslett hawking heisenberg hellman hermann herschel
hertz heyrovsky hodgkin hofstadter hoover hopper hugle hypatia ishizaka jackson jang jemison
jennings jepsen johnson joliot jones kalam kapitsa kare keldysh keller kepler khayyam khorana
kilby kirch knuth kowalevski lalande lamarr lamport leakey leavitt lederberg lehmann lewin
lichterman liskov lovelace lumiere mahavira margulis matsumoto maxwell mayer mccarthy mcclintock
mclaren mclean mcnulty meitner mendel mendeleev meninsky merkle mestorf mirzakhani montalcini
moore morse moser murdock napier nash neumann newton nightingale nobel noether northcutt noyce
panini pare pascal pasteur payne perlman pike poincare poitras proskuriakova ptolemy raman
ramanujan rhodes ride ritchie robinson roentgen rosalind rubin saha sammet sanderson satoshi
shamir shannon shaw shirley shockley shtern sinoussi snyder solomon spence stonebraker sutherland
swanson swartz swirles taussig tesla tharp thompson torvalds tu turing varahamihira vaughan
villani visvesvaraya volhard wescoff wilbur wiles williams williamson wilson wing wozniak wright
wu yalow yonath zhukovsky""".split()


def random_name(taken: Iterable[str] = (), rng: random.Random | None = None) -> str:
    """A docker-style ``adjective_surname`` not in ``taken`` (a digit is appended on clashes)."""
    rng = rng or random.Random()
    taken = set(taken)
    for attempt in range(20):
        name = f"{rng.choice(_LEFT)}_{rng.choice(_RIGHT)}"
        if name == "boring_wozniak":       # Steve Wozniak is not boring (Docker's rule)
            continue
        if attempt > 5:
            name += str(rng.randint(0, 9))
        if name not in taken:
            return name
    while True:
        name = f"{rng.choice(_LEFT)}_{rng.choice(_RIGHT)}{rng.randint(10, 99999)}"
        if name not in taken:
            return name


# --------------------------------------------------------------------------- values

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_memory(value: str | int | float) -> int:
    """Docker's ``RAMInBytes``: "512m" → 536870912, "1g", "1.5GiB", "1024" (bytes)."""
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid size: '{value}'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise InvalidArgument(f"invalid size: '{value}'")
        return int(value)
    m = _SIZE_RE.match(str(value).strip())
    if not m:
        raise InvalidArgument(f"invalid size: '{value}'")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def parse_cpus(value: str | float) -> int:
    """``--cpus 1.5`` → NanoCpus (1_500_000_000)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid value for cpus: {value!r} is not a number") from None
    if f < 0 or f != f:
        raise InvalidArgument(f"invalid value for cpus: {value!r} must be positive")
    return int(round(f * 1e9))


def parse_restart_policy(value: str) -> dict[str, Any]:
    """``no``, ``always``, ``unless-stopped``, ``on-failure[:N]`` → Docker's RestartPolicy."""
    name, sep, count = (value or "no").partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy '{value}': expected no, always, "
                              "unless-stopped or on-failure[:max-retries]")
    if sep:
        if name != "on-failure":
            raise InvalidArgument(f"invalid restart policy '{value}': maximum retry count "
                                  "can only be used with 'on-failure'")
        try:
            n = int(count)
        except ValueError:
            raise InvalidArgument(f"invalid restart policy '{value}': maximum retry count "
                                  "must be an integer") from None
        if n < 0:
            raise InvalidArgument(f"invalid restart policy '{value}': maximum retry count "
                                  "cannot be negative")
        return {"Name": name, "MaximumRetryCount": n}
    return {"Name": name, "MaximumRetryCount": 0}


def validate_restart_policy(rp: Any) -> dict[str, Any]:
    if not rp:
        return {"Name": "no", "MaximumRetryCount": 0}
    if not isinstance(rp, dict):
        raise InvalidArgument("HostConfig.RestartPolicy must be an object")
    name = rp.get("Name") or "no"
    n = rp.get("MaximumRetryCount") or 0
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'")
    if not isinstance(n, int) or n < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count must be a "
                              "non-negative integer")
    if n and name != "on-failure":
        raise InvalidArgument(f"invalid restart policy: maximum retry count can only be used "
                              f"with 'on-failure' (got '{name}')")
    return {"Name": name, "MaximumRetryCount": n}


def parse_signal(value: str | int | None, default: int = _signal.SIGTERM) -> int:
    """"SIGTERM", "TERM", "term", "15" → 15. InvalidArgument for unknown names."""
    if value is None or value == "":
        return int(default)
    if isinstance(value, int):
        if 0 < value < 65:
            return value
        raise InvalidArgument(f"invalid signal: {value}")
    s = str(value).strip()
    if s.isdigit():
        return parse_signal(int(s))
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(_signal.Signals, name, None) if name in _signal.Signals.__members__ else None
    if sig is None:
        raise InvalidArgument(f"invalid signal: {value}")
    return int(sig)


def parse_env_list(entries: Iterable[str], what: str = "environment variable") -> list[str]:
    out = []
    for e in entries or ():
        if not isinstance(e, str):
            raise InvalidArgument(f"invalid {what}: {e!r} is not a string")
        if e.startswith("=") or e == "":
            raise InvalidArgument(f"invalid {what}: {e!r}")
        out.append(e)
    return out


def merge_env(image_env: Iterable[str], user_env: Iterable[str]) -> list[str]:
    """``Config.Env`` from the image's and the user's: user entries replace by key; a bare
    "K" is kept as given (Docker keeps it in ``Config.Env``; it unsets K in the process's
    environment, see :func:`process_env`)."""
    result: list[str] = list(image_env or ())
    index = {e.partition("=")[0]: i for i, e in enumerate(result)}
    for e in user_env or ():
        key = e.partition("=")[0]
        if key in index:
            result[index[key]] = e
        else:
            index[key] = len(result)
            result.append(e)
    return result


def process_env(defaults: Iterable[str], env: Iterable[str]) -> list[str]:
    """Docker's ``ReplaceOrAppendEnvValues``: ``env`` entries replace ``defaults`` by key or
    are appended; a bare "K" removes K and is itself dropped."""
    result: list[str | None] = list(defaults)
    index = {e.partition("=")[0]: i for i, e in enumerate(result) if e is not None}
    for e in env:
        key, sep, _ = e.partition("=")
        if key in index:
            result[index[key]] = e if sep else None
        elif sep:
            index[key] = len(result)
            result.append(e)
    return [e for e in result if e is not None]


def normalize_port(port: str) -> str:
    p, _, proto = str(port).partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid port protocol: {port!r}")
    lo, _, hi = p.partition("-")
    for part in (lo, hi) if hi else (lo,):
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise InvalidArgument(f"invalid port: {port!r}")
    return f"{p}/{proto}"


def _strlist(value: Any, what: str) -> list[str] | None:
    """Docker accepts a string or a list of strings for Cmd/Entrypoint; None means unset."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgument(f"{what} must be a string or a list of strings")


# --------------------------------------------------------------------------- merge

@dataclass
class CreateSpec:
    """A validated create request merged with its image: what the engine stores."""

    config: dict[str, Any]                   # Docker Config (inspect's .Config)
    host_config: dict[str, Any]              # Docker HostConfig, normalized
    networking_config: dict[str, Any] = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        return list(self.config.get("Entrypoint") or []) + list(self.config.get("Cmd") or [])

    @property
    def path(self) -> str:
        return self.argv[0] if self.argv else ""

    @property
    def args(self) -> list[str]:
        return self.argv[1:]


#: ``ContainerSpec`` is the name the design uses; ``CreateSpec`` avoids a clash with
#: :class:`aiorun.runtime.spec.ContainerSpec` in modules that import both.
ContainerSpec = CreateSpec

#: The runtime's name in ``HostConfig.Runtime`` and ``info``'s ``DefaultRuntime``.
DEFAULT_RUNTIME = "aiorun"

_HOST_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no",
                                                                   "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None,
    "CapDrop": None, "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
    "IpcMode": "private", "Privileged": False, "PublishAllPorts": False,
    "ReadonlyRootfs": False, "CgroupParent": "", "Memory": 0, "MemorySwap": 0,
    "NanoCpus": 0, "CpuShares": 0, "CpuPeriod": 0, "CpuQuota": 0, "PidsLimit": None,
    "Mounts": None, "Init": None, "ShmSize": 67108864, "Tmpfs": None, "SecurityOpt": None,
}


def merge(body: dict[str, Any], image_config: dict[str, Any], *, container_id: str,
          image_ref: str | None = None, ncpu: int | None = None) -> CreateSpec:
    """Validate ``body`` (Docker create JSON) and merge it with the image's ``config``.

    ``image_config`` is the image's whole config document or just its ``config`` part.
    ``container_id`` gives the default hostname (its first 12 characters).
    """
    if not isinstance(body, dict):
        raise InvalidArgument("the create request body must be a JSON object")
    img = image_config.get("config", image_config) if image_config else {}
    img = img or {}

    entrypoint = _strlist(body.get("Entrypoint"), "Entrypoint")
    cmd = _strlist(body.get("Cmd"), "Cmd")
    if entrypoint == [""]:
        entrypoint = []
    if not entrypoint:
        if not cmd:
            cmd = list(img.get("Cmd") or [])
        if entrypoint is None:
            entrypoint = list(img.get("Entrypoint") or [])
    cmd = cmd or []
    if not entrypoint and not cmd:
        raise InvalidArgument("no command specified: the image has no Cmd or Entrypoint and "
                              "none was given")

    env = merge_env(img.get("Env") or [], parse_env_list(body.get("Env") or []))
    workdir = body.get("WorkingDir") or img.get("WorkingDir") or ""
    if not isinstance(workdir, str):
        raise InvalidArgument("WorkingDir must be a string")
    if workdir and not workdir.startswith("/"):
        raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to be "
                              "an absolute path")
    user = body.get("User") or img.get("User") or ""
    if not isinstance(user, str):
        raise InvalidArgument("User must be a string")
    hostname = body.get("Hostname") or container_id[:12]
    if not re.match(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$", hostname):
        raise InvalidArgument(f"invalid hostname: {hostname!r}")
    stop_signal = body.get("StopSignal") or img.get("StopSignal") or None
    if stop_signal:
        parse_signal(stop_signal)
    stop_timeout = body.get("StopTimeout")
    if stop_timeout is not None and not isinstance(stop_timeout, int):
        raise InvalidArgument("StopTimeout must be an integer")

    labels = dict(img.get("Labels") or {})
    labels.update(body.get("Labels") or {})
    hc = _host_config(body.get("HostConfig") or {}, ncpu)
    exposed: dict[str, dict[str, Any]] = {}
    for p in list((img.get("ExposedPorts") or {})) + list(body.get("ExposedPorts") or {}) \
            + list(hc["PortBindings"]):
        exposed[normalize_port(p)] = {}
    volumes = dict(img.get("Volumes") or {})
    volumes.update(body.get("Volumes") or {})

    config = {
        "Hostname": hostname,
        "Domainname": body.get("Domainname") or "",
        "User": user,
        "AttachStdin": bool(body.get("AttachStdin")),
        "AttachStdout": bool(body.get("AttachStdout", False)),
        "AttachStderr": bool(body.get("AttachStderr", False)),
        "ExposedPorts": exposed or None,
        "Tty": bool(body.get("Tty")),
        "OpenStdin": bool(body.get("OpenStdin")),
        "StdinOnce": bool(body.get("StdinOnce")),
        "Env": env,
        "Cmd": cmd or None,
        "Image": image_ref or body.get("Image") or "",
        "Volumes": volumes or None,
        "WorkingDir": workdir,
        "Entrypoint": entrypoint or None,
        "OnBuild": None,
        "Labels": labels,
    }
    healthcheck = merge_healthcheck(img.get("Healthcheck"), body.get("Healthcheck"))
    if healthcheck:
        check_healthcheck(healthcheck)
        config["Healthcheck"] = healthcheck
    if stop_signal:
        config["StopSignal"] = stop_signal
    if stop_timeout is not None:
        config["StopTimeout"] = stop_timeout
    return CreateSpec(config, hc, copy.deepcopy(body.get("NetworkingConfig") or {}))


def _host_config(raw: dict[str, Any], ncpu: int | None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidArgument("HostConfig must be an object")
    hc = copy.deepcopy(_HOST_DEFAULTS)
    hc.update(copy.deepcopy(raw))
    hc["LogConfig"] = normalized_log_config(hc.get("LogConfig"))
    if not hc.get("Runtime"):           # inspect names it, as Docker's does ("runc" there)
        hc["Runtime"] = DEFAULT_RUNTIME
    if not hc.get("ShmSize"):
        hc["ShmSize"] = _HOST_DEFAULTS["ShmSize"]         # 0 = the default, as Docker shows
    if hc.get("NetworkMode") in (None, "", "default"):
        hc["NetworkMode"] = "bridge"
    hc["RestartPolicy"] = validate_restart_policy(hc.get("RestartPolicy"))
    if hc.get("AutoRemove") and hc["RestartPolicy"]["Name"] != "no":
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    for key in ("Memory", "MemorySwap", "MemoryReservation"):
        if isinstance(hc.get(key), str):
            hc[key] = parse_memory(hc[key])
    mem = hc.get("Memory") or 0
    if not isinstance(mem, int) or mem < 0:
        raise InvalidArgument(f"invalid memory limit: {mem!r}")
    if 0 < mem < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = hc.get("MemorySwap") or 0
    if swap and swap != -1 and mem and swap < mem:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, "
                              "see usage")
    nano = hc.get("NanoCpus") or 0
    if isinstance(nano, str):
        nano = hc["NanoCpus"] = parse_cpus(nano) if "." in nano else int(nano)
    if not isinstance(nano, int) or nano < 0:
        raise InvalidArgument(f"invalid NanoCpus: {nano!r}")
    ncpu = ncpu or os.cpu_count() or 1
    if nano and (nano < 10_000_000 or nano > ncpu * 1_000_000_000):
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                              f"{ncpu} CPUs available")
    if hc.get("CpuQuota") and hc.get("NanoCpus"):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    pids = hc.get("PidsLimit")
    if pids is not None and (not isinstance(pids, int) or isinstance(pids, bool)):
        raise InvalidArgument(f"invalid PidsLimit: {pids!r}")
    if pids is not None and pids <= 0:
        hc["PidsLimit"] = None            # Docker: 0 / -1 mean unlimited
    for key in ("CapAdd", "CapDrop", "Binds", "Dns", "ExtraHosts"):
        v = hc.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise InvalidArgument(f"HostConfig.{key} must be a list of strings")
    for key in ("CapAdd", "CapDrop"):
        if hc.get(key):
            hc[key] = [normalize_capability(c) for c in hc[key]]
    pb = hc.get("PortBindings") or {}
    if not isinstance(pb, dict):
        raise InvalidArgument("HostConfig.PortBindings must be an object")
    hc["PortBindings"] = {normalize_port(k): v for k, v in pb.items()}
    if hc.get("CgroupParent") and (".." in str(hc["CgroupParent"]).split("/")):
        raise InvalidArgument(f"invalid cgroup parent: {hc['CgroupParent']!r}")
    return hc


def normalize_capability(cap: str) -> str:
    """"net_admin" / "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; "ALL" stays "ALL"."""
    c = cap.strip().upper()
    if c == "ALL":
        return c
    if not c.startswith("CAP_"):
        c = "CAP_" + c
    if not re.match(r"^CAP_[A-Z_]+$", c):
        raise InvalidArgument(f"invalid capability: {cap!r}")
    return c
