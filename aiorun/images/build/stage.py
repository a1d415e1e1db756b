"""A build stage (the image a stage is making so far) and its history entries."""

from __future__ import annotations

from typing import Any

from aiorun.images.build.dockerfile import env_dict
from aiorun.images.oci import now_rfc3339 as now_rfc3339nano


class Stage:
    """One stage of a (multi-stage) build: the image it is making so far."""

    def __init__(self) -> None:
        self.layers: list[str] = []                # diff_id hex, bottom first
        self.config: dict[str, Any] = {}           # the image config's "config"
        self.history: list[dict[str, Any]] = []
        self.arch = "amd64"
        self.os = "linux"
        self.args: dict[str, str] = {}             # declared ARGs with their values
        self.cmd_set = False
        self.author = ""
        self.name = ""

    def fork(self) -> "Stage":
        """A new stage starting from this one (``FROM <stage>``)."""
        st = Stage()
        st.layers, st.config, st.history = list(self.layers), dict(self.config), \
            list(self.history)
        st.arch, st.os, st.author = self.arch, self.os, self.author
        return st

    def substitution_env(self) -> dict[str, str]:
        """Variables for substitution: ARG values, overridden by ENV (Docker's precedence)."""
        env = dict(self.args)
        env.update(env_dict(self.config.get("Env")))
        return env

    def run_env(self) -> list[str]:
        """The environment of a RUN step's process: ENV, plus ARG values ENV does not set."""
        env = env_dict(self.config.get("Env"))
        for k, v in self.args.items():
            env.setdefault(k, v)
        return [f"{k}={v}" for k, v in env.items()]


def history_entry(created_by: str, empty: bool) -> dict[str, Any]:
    """One image history entry, created now."""
    h: dict[str, Any] = {"created": now_rfc3339nano(), "created_by": created_by}
    if empty:
        h["empty_layer"] = True
    return h
