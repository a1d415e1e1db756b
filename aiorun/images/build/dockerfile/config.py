"""The metadata instructions' effect on an image config, and ``commit --change``.

* :func:`apply_metadata` applies CMD ENTRYPOINT ENV EXPOSE LABEL USER WORKDIR VOLUME
  STOPSIGNAL SHELL HEALTHCHECK ONBUILD MAINTAINER to an image's ``config`` dict (``Env``,
  ``Cmd``...), expanding variables with the file's escape token as BuildKit does.
* :func:`command_form` is a RUN/CMD/ENTRYPOINT's argv (heredocs included, as BuildKit runs
  them).
* :func:`parse_changes` reads ``commit --change`` values.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Mapping

from aiorun.errors import InvalidArgument
from aiorun.images.build.dockerfile.lines import heredoc_from_word
from aiorun.images.build.dockerfile.parser import DockerfileError, Instruction, parse
from aiorun.images.build.expand import expand_word, expand_words

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


def key_values(ins: Instruction, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """ENV/LABEL arguments → expanded pairs (``K=V K2="v 2"`` and the legacy ``K value``)."""
    a = ins.args
    return [(expand_word(a[j], env, ins.escape), expand_word(a[j + 1], env, ins.escape))
            for j in range(0, len(a) - 2, 3)]


def arg_pairs(ins: Instruction) -> list[tuple[str, str | None]]:
    """An ARG's ``(name, default or None)`` pairs, defaults not yet expanded."""
    out: list[tuple[str, str | None]] = []
    for w in ins.args:
        k, eq, v = w.partition("=")
        out.append((k, v if eq else None))
    return out


def command_form(ins: Instruction, shell: list[str] | None = None) -> list[str]:
    """RUN/CMD/ENTRYPOINT argv: exec form as written, shell form wrapped in the shell.

    With heredocs (RUN), as BuildKit: a command that is only ``<<EOF`` runs the heredoc's
    content as the shell script (a ``#!`` script is run as a file: see
    :func:`heredoc_script`); otherwise the line and the heredocs are given to the shell,
    which reads them as its own heredocs."""
    if ins.json is not None:
        return list(ins.json)
    sh = list(shell or DEFAULT_SHELL)
    if not ins.heredocs:
        return sh + [ins.rest]
    if heredoc_from_word(ins.rest) is not None:
        doc = ins.heredocs[0]
        if doc.text().startswith("#!"):
            return sh + [heredoc_script_path(ins)]
        return sh + [doc.text()]
    full = ins.rest
    for doc in ins.heredocs:
        full += "\n" + doc.content + doc.name
    return sh + [full]


def heredoc_script_path(ins: Instruction) -> str:
    """Where a RUN's ``#!`` heredoc script is mounted (BuildKit's ``/dev/pipes/<name>``)."""
    return posixpath.join("/dev/pipes", ins.heredocs[0].name)


def heredoc_script(ins: Instruction) -> bytes | None:
    """The content of the file a ``RUN <<EOF`` with a ``#!`` script runs, or None."""
    if ins.cmd != "RUN" or ins.json is not None or not ins.heredocs or \
            heredoc_from_word(ins.rest) is None:
        return None
    text = ins.heredocs[0].text()
    return text.encode() if text.startswith("#!") else None


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
        words = [w for a in ins.args for w in expand_words(a, venv, ins.escape)]
        for p in parse_ports(words, ins.line):
            ports[p] = {}
        config["ExposedPorts"] = ports
    elif c == "USER":
        user = expand_word(ins.args[0], venv, ins.escape)
        if not user:
            raise DockerfileError("USER requires a user name", ins.line)
        config["User"] = user
    elif c == "WORKDIR":
        wd = expand_word(ins.args[0], venv, ins.escape)
        if not wd.startswith("/"):
            wd = posixpath.join(config.get("WorkingDir") or "/", wd)
        config["WorkingDir"] = posixpath.normpath(wd)
    elif c == "VOLUME":
        vols = dict(config.get("Volumes") or {})
        words = ins.json if ins.json is not None else \
            [expand_word(a, venv, ins.escape) for a in ins.args]
        for v in words:
            v = v.strip()
            if not v:
                raise DockerfileError("VOLUME specified can not be an empty string", ins.line)
            vols[v] = {}
        config["Volumes"] = vols
    elif c == "STOPSIGNAL":
        sig = expand_word(ins.args[0], venv, ins.escape)
        if not re.match(r"^(SIG)?[A-Z0-9+-]+$|^\d+$", sig):
            raise DockerfileError(f"invalid STOPSIGNAL {sig!r}", ins.line)
        config["StopSignal"] = sig
    elif c == "SHELL":
        config["Shell"] = list(ins.json or [])
    elif c == "HEALTHCHECK":
        config["Healthcheck"] = healthcheck(ins)
    elif c == "ONBUILD":
        expr = ins.rest + "".join("\n" + h.content + h.name for h in ins.heredocs)
        config["OnBuild"] = list(config.get("OnBuild") or []) + [expr]
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
    if ins.args[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    if len(ins.args) < 2 and not ins.json:
        raise DockerfileError("Missing command after HEALTHCHECK CMD", ins.line)
    js = ins.json
    out: dict[str, Any] = {"Test": ["CMD"] + js if js is not None
                           else ["CMD-SHELL", ins.args[1]]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        value = ins.flags.get(flag)
        if value:
            ns = parse_duration(value, ins.line)
            if 0 < ns < 1_000_000:
                raise DockerfileError(f"Interval {flag!r} cannot be less than 1ms", ins.line)
            if ns:
                out[key] = ns
    retries = ins.flags.get("retries")
    if retries:
        try:
            n = int(retries)
        except ValueError:
            raise DockerfileError(f"invalid --retries {retries!r}", ins.line) from None
        if n < 0:
            raise DockerfileError(f"--retries cannot be negative ({n})", ins.line)
        out["Retries"] = n
    return out


def parse_changes(changes: list[str] | tuple[str, ...]) -> list[Instruction]:
    """``commit --change`` values → instructions; only Docker's commit instructions."""
    out = []
    for ch in changes:
        for ln in ch.split("\n"):
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
