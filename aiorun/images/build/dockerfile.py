"""A pure Dockerfile parser, word expansion, and the metadata instructions' effect on a config.

Used by the builder (``aiorun build``) and by ``commit --change``. No I/O.

* :func:`parse` turns Dockerfile text into :class:`Instruction`s: parser directives
  (``# escape=``` is honoured, others ignored), comments, line continuations, blank lines.
  Errors are :class:`DockerfileError` naming the line: ``dockerfile parse error on line 3: ...``.
* :func:`expand_word` / :func:`expand_words` (in :mod:`.expand`) do Docker's shell-like word processing for the
  instructions that get variable substitution (ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER
  VOLUME WORKDIR ARG): quotes, backslash escapes, ``$VAR``, ``${VAR}``, ``${VAR:-word}``,
  ``${VAR-word}``, ``${VAR:+word}``, ``${VAR+word}``. RUN/CMD/ENTRYPOINT are not expanded
  (the shell in the container does that).
* :func:`apply_metadata` applies CMD ENTRYPOINT ENV EXPOSE LABEL USER WORKDIR VOLUME
  STOPSIGNAL SHELL MAINTAINER to an image's ``config`` dict (``Env``, ``Cmd``...).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from aiorun.errors import InvalidArgument
# word expansion lives in .expand; importable from here as before
from aiorun.images.build.expand import expand_word, expand_words
from aiorun.images.build.flags import Flags, check as check_flags

#: Instructions aiorun knows; anything else is a parse error naming the line.
KNOWN = ("FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "LABEL", "EXPOSE", "ADD", "COPY", "USER",
         "WORKDIR", "VOLUME", "ARG", "STOPSIGNAL", "SHELL", "MAINTAINER", "ONBUILD",
         "HEALTHCHECK")
#: Instructions that only change the image config (history ``empty_layer: true``).
METADATA = ("CMD", "ENTRYPOINT", "ENV", "LABEL", "EXPOSE", "USER", "WORKDIR", "VOLUME",
            "STOPSIGNAL", "SHELL", "MAINTAINER", "ARG", "HEALTHCHECK", "ONBUILD")
#: Instructions whose arguments get variable substitution.
EXPANDED = ("ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
            "WORKDIR", "ARG")
#: What ``commit --change`` accepts (Docker's list).
COMMIT_CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME",
                  "WORKDIR", "STOPSIGNAL")

DEFAULT_SHELL = ["/bin/sh", "-c"]
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"^--([a-zA-Z][a-zA-Z0-9-]*)(?:=(.*))?$")


class DockerfileError(InvalidArgument):
    """A Dockerfile problem; the message names the line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        if line is not None:
            message = f"dockerfile parse error on line {line}: {message}"
        super().__init__(message)
        self.line = line


@dataclass
class Instruction:
    """One instruction. ``rest`` is the raw argument text after the flags; ``json`` holds the
    parsed list when the arguments are in exec (JSON array) form."""

    cmd: str
    rest: str
    line: int
    original: str
    flags: Flags = field(default_factory=Flags)
    json: list[str] | None = None

    def __str__(self) -> str:
        return self.original


def _json_list(text: str) -> list[str] | None:
    t = text.strip()
    if not t.startswith("["):
        return None
    try:
        v = json.loads(t)
    except ValueError:
        return None
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    return None


def parse(text: str) -> list[Instruction]:
    """Parse a Dockerfile. Raises DockerfileError for unknown instructions, missing
    arguments, bad flags and a missing FROM."""
    lines = text.splitlines()
    escape = "\\"
    i = 0
    # parser directives: only at the very top, before any comment/blank/instruction
    seen_directives: set[str] = set()
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i].strip())
        if not m or m.group(1).lower() in seen_directives:
            break
        name, value = m.group(1).lower(), m.group(2)
        seen_directives.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(f"invalid escape token {value!r} does not validate", i + 1)
            escape = value
        # syntax=, check=: ignored (no frontends here)
        i += 1

    out: list[Instruction] = []
    while i < len(lines):
        start = i
        raw = lines[i]
        i += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = [raw]
        text = raw.rstrip()
        # continuation: the line ends with the escape char; comment and empty lines inside a
        # continued instruction are skipped (Docker does the same)
        while text.endswith(escape):
            text = text[: -len(escape)]
            while i < len(lines) and (not lines[i].strip() or lines[i].strip().startswith("#")):
                i += 1
            if i >= len(lines):
                break
            parts.append(lines[i])
            text += lines[i].rstrip()
            i += 1
        text = text.strip()
        word, _, rest = text.partition(" ")
        if "\t" in word:
            word, _, r2 = word.partition("\t")
            rest = r2 + " " + rest
        cmd = word.upper()
        rest = rest.strip()
        if cmd not in KNOWN:
            raise DockerfileError(f"unknown instruction: {word}", start + 1)
        raw_flags: list[str] = []
        while cmd in ("ADD", "COPY", "RUN", "FROM", "HEALTHCHECK") and rest.startswith("--"):
            tok, _, after = rest.partition(" ")
            if not _FLAG.match(tok):
                raise DockerfileError(f"{cmd}: bad flag {tok!r}", start + 1)
            raw_flags.append(tok)
            rest = after.strip()
        flags = Flags(raw_flags)
        problem = check_flags(cmd, flags)
        if problem:
            raise DockerfileError(problem, start + 1)
        if cmd == "RUN" and flags:   # RUN --mount/--network/--security: not implemented yet
            raise DockerfileError(f"RUN --{flags.names()[0]} is not supported by aiorun",
                                  start + 1)
        if not rest and cmd not in ("CMD", "ENTRYPOINT", "RUN"):
            raise DockerfileError(f"{cmd} requires at least one argument", start + 1)
        if cmd in ("CMD", "ENTRYPOINT", "RUN") and not rest:
            raise DockerfileError(f"{cmd} requires at least one argument", start + 1)
        original = f"{cmd} " + " ".join(raw_flags + [rest])
        ins = Instruction(cmd, rest, start + 1, original.strip(), flags, _json_list(rest))
        _validate(ins)
        out.append(ins)
    if not out:
        raise DockerfileError("the Dockerfile cannot be empty")
    for ins in out:
        if ins.cmd == "FROM":
            break
        if ins.cmd != "ARG":
            raise DockerfileError(f"{ins.cmd} before the first FROM: a Dockerfile must begin "
                                  "with FROM (only ARG may precede it)", ins.line)
    else:
        raise DockerfileError("no FROM instruction: a Dockerfile must begin with FROM")
    return out


def _validate(ins: Instruction) -> None:
    """Shape checks that need no variables."""
    c, line = ins.cmd, ins.line
    if c in ("ADD", "COPY"):
        args = ins.json if ins.json is not None else ins.rest.split()
        if len(args) < 2:
            raise DockerfileError(f"{c} requires at least two arguments, but only one was "
                                  "provided. Destination could not be determined", line)
    elif c == "FROM":
        words = ins.rest.split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise DockerfileError("FROM requires either one or three arguments "
                                  "(FROM IMAGE [AS NAME])", line)
    elif c == "SHELL":
        if ins.json is None or not ins.json:
            raise DockerfileError("SHELL requires the arguments to be in JSON form", line)
    elif c == "ONBUILD":
        trig = ins.rest.split(None, 1)[0].upper()
        if trig in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(f"{trig} isn't allowed as an ONBUILD trigger", line)
        try:
            parse("FROM scratch\n" + ins.rest)
        except DockerfileError as exc:
            raise DockerfileError(f"ONBUILD trigger: {exc.message.split(': ', 1)[-1]}",
                                  line) from None
    elif c == "HEALTHCHECK":
        word = ins.rest.split(None, 1)[0].upper()
        if word not in ("NONE", "CMD"):
            raise DockerfileError("HEALTHCHECK takes NONE or CMD ...", line)
        if word == "NONE" and (ins.flags or len(ins.rest.split()) > 1):
            raise DockerfileError("HEALTHCHECK NONE takes no other arguments", line)
    elif c in ("WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"):
        pass
    elif c == "ARG":
        if len(ins.rest.split()) != 1:
            raise DockerfileError("ARG requires exactly one argument (ARG NAME[=DEFAULT])", line)


def key_values(ins: Instruction, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """ENV/LABEL arguments → pairs. Both ``K=V K2="v 2"`` and the legacy ``K some value``."""
    raw_first = ins.rest.split(None, 1)
    if raw_first and "=" not in raw_first[0]:
        if ins.cmd == "LABEL" or len(raw_first) < 2:
            raise DockerfileError(f"{ins.cmd} names can not be blank / must have a value "
                                  f"(use {ins.cmd} KEY=VALUE)", ins.line)
        return [(raw_first[0], expand_word(raw_first[1], env))]
    pairs = []
    for w in expand_words(ins.rest, env):
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise DockerfileError(f"{ins.cmd} must be KEY=VALUE pairs, got {w!r}", ins.line)
        pairs.append((k, v))
    return pairs


def command_form(ins: Instruction, shell: list[str] | None = None) -> list[str]:
    """RUN/CMD/ENTRYPOINT argv: exec form as written, shell form wrapped in the shell."""
    if ins.json is not None:
        return list(ins.json)
    return list(shell or DEFAULT_SHELL) + [ins.rest]


def env_dict(env_list: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env_list or ():
        k, _, v = e.partition("=")
        out[k] = v
    return out


def set_env(config: dict[str, Any], key: str, value: str) -> None:
    env = [e for e in (config.get("Env") or []) if e.partition("=")[0] != key]
    env.append(f"{key}={value}")
    config["Env"] = env


def parse_ports(words: list[str], line: int | None = None) -> list[str]:
    """EXPOSE words → ``["80/tcp", ...]`` (ranges expanded)."""
    out = []
    for w in words:
        port, _, proto = w.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise DockerfileError(f"invalid proto: {proto}", line)
        lo, dash, hi = port.partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise DockerfileError(f"invalid containerPort: {port}", line) from None
        if not (0 < a <= 65535 and 0 < b <= 65535 and a <= b):
            raise DockerfileError(f"invalid port range: {port}", line)
        out += [f"{p}/{proto}" for p in range(a, b + 1)]
    return out


def apply_metadata(config: dict[str, Any], ins: Instruction,
                   env: Mapping[str, str] | None = None, shell: list[str] | None = None) -> None:
    """Apply a metadata instruction to the image ``config`` dict (in place).

    ``env`` is used for substitution (defaults to the config's own Env). ENTRYPOINT does not
    reset Cmd here: the builder does that (it knows whether CMD was set in this build).
    """
    venv = dict(env) if env is not None else env_dict(config.get("Env"))
    c = ins.cmd
    if c == "CMD":
        config["Cmd"] = command_form(ins, shell or config.get("Shell"))
    elif c == "ENTRYPOINT":
        config["Entrypoint"] = command_form(ins, shell or config.get("Shell"))
    elif c == "ENV":
        for k, v in key_values(ins, venv):
            set_env(config, k, v)
            venv[k] = v
    elif c == "LABEL":
        labels = dict(config.get("Labels") or {})
        labels.update(key_values(ins, venv))
        config["Labels"] = labels
    elif c == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for p in parse_ports(expand_words(ins.rest, venv), ins.line):
            ports[p] = {}
        config["ExposedPorts"] = ports
    elif c == "USER":
        user = expand_word(ins.rest, venv)
        if not user:
            raise DockerfileError("USER requires a user name", ins.line)
        config["User"] = user
    elif c == "WORKDIR":
        wd = expand_word(ins.rest, venv)
        if not wd.startswith("/"):
            wd = posixpath.join(config.get("WorkingDir") or "/", wd)
        config["WorkingDir"] = posixpath.normpath(wd)
    elif c == "VOLUME":
        vols = dict(config.get("Volumes") or {})
        words = ins.json if ins.json is not None else expand_words(ins.rest, venv)
        for v in words:
            v = v.strip()
            if not v:
                raise DockerfileError("VOLUME specified can not be an empty string", ins.line)
            vols[v] = {}
        config["Volumes"] = vols
    elif c == "STOPSIGNAL":
        sig = expand_word(ins.rest, venv)
        if not re.match(r"^(SIG)?[A-Z0-9+-]+$|^\d+$", sig):
            raise DockerfileError(f"invalid STOPSIGNAL {sig!r}", ins.line)
        config["StopSignal"] = sig
    elif c == "SHELL":
        config["Shell"] = list(ins.json or [])
    elif c == "HEALTHCHECK":
        config["Healthcheck"] = healthcheck(ins)
    elif c == "ONBUILD":
        config["OnBuild"] = list(config.get("OnBuild") or []) + [ins.rest]
    elif c == "MAINTAINER":
        pass  # stored as the image's author by the builder
    else:
        raise DockerfileError(f"{c} does not change the image configuration", ins.line)


_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DUR_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
           "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str, line: int | None = None) -> int:
    """Go duration (``30s``, ``1m30s``, ``500ms``) → nanoseconds."""
    pos, total = 0, 0.0
    if not text:
        raise DockerfileError("empty duration", line)
    for m in _DUR.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not total < 2**63:  # Go's durations are int64 ns (and no inf)
        raise DockerfileError(f"invalid duration {text!r} (use e.g. 30s, 1m30s, 500ms)", line)
    return int(total)


def healthcheck(ins: Instruction) -> dict[str, Any]:
    """HEALTHCHECK → the config's ``Healthcheck`` object (durations in nanoseconds)."""
    word, _, rest = ins.rest.partition(" ")
    if word.upper() == "NONE":
        return {"Test": ["NONE"]}
    rest = rest.strip()
    if not rest:
        raise DockerfileError("HEALTHCHECK CMD needs a command", ins.line)
    js = _json_list(rest)
    out: dict[str, Any] = {"Test": ["CMD"] + js if js is not None else ["CMD-SHELL", rest]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        if flag in ins.flags:
            out[key] = parse_duration(ins.flags.get(flag, ""), ins.line)
    retries = ins.flags.get("retries")
    if retries is not None:
        try:
            out["Retries"] = int(retries)
        except ValueError:
            raise DockerfileError(f"invalid --retries {retries!r}", ins.line) from None
    return out


def parse_changes(changes: list[str] | tuple[str, ...]) -> list[Instruction]:
    """``commit --change`` values → instructions; only Docker's commit instructions."""
    out = []
    for ch in changes:
        for ln in ch.splitlines() or [""]:
            if not ln.strip():
                continue
            try:
                ins = parse("FROM scratch\n" + ln)[1:]
            except DockerfileError as exc:
                raise InvalidArgument(f"invalid change {ln!r}: {exc.message}") from None
            for i in ins:
                if i.cmd not in COMMIT_CHANGES:
                    raise InvalidArgument(f"{i.cmd} is not a valid change command")
                i.line = 0
                out.append(i)
    return out
