"""Detect the host's other firewalls and keep aiorun's scoped accept rules in them
(the rules and the reasons: :mod:`aiorun.net.firewall`).

Everything here runs in a worker thread (``nft``/``iptables`` commands, ~10 ms), when
networks are created, removed or restored and at the engine's periodic re-check (which
changes nothing when nothing changed): never per container. ``AIORUN_FIREWALL=off``
makes aiorun add nothing outside its own table; a network create then fails where the host
would drop its traffic, saying what to allow.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from dataclasses import asdict
from typing import Any

import anyio

from aiorun.errors import AiorunError
from aiorun.net import firewall as fw

log = logging.getLogger("aiorun.firewall")

_BRNF = "/proc/sys/net/bridge/bridge-nf-call-iptables"
_TIMEOUT = 30


class FirewallError(AiorunError):
    """The host's firewall would drop aiorun's traffic and aiorun cannot let it through."""


def _run(argv: list[str], text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=_TIMEOUT,
                          check=False)


def _legacy_tables(version: str) -> set[str]:
    path = f"/proc/net/ip{'6' if version == '6' else ''}_tables_names"
    try:
        with open(path) as f:
            return set(f.read().split())
    except OSError:
        return set()


def detect(table: str) -> tuple[fw.HostFirewall, dict[str, Any], list[str]]:
    """(what was found, the ``nft -j`` ruleset, iptables commands that are needed but not
    installed). ``table``: aiorun's own nft table (names its scope)."""
    found = fw.HostFirewall()
    try:
        with open(_BRNF) as f:
            found.br_netfilter = f.read().strip() == "1"
    except OSError:
        pass
    ruleset: dict[str, Any] = {}
    if shutil.which("nft"):
        res = _run(["nft", "-j", "list", "ruleset"])
        if res.returncode == 0 and res.stdout.strip():
            ruleset = json.loads(res.stdout)
        elif res.returncode != 0:
            log.warning("nft -j list ruleset failed: %s", res.stderr.strip())
    found.nft_chains = fw.foreign_chains(ruleset, own_prefix="aiorun")
    nft_tables = {(i["table"]["family"], i["table"]["name"])
                  for i in ruleset.get("nftables", []) if "table" in i}
    missing = []
    for v, fam in (("", "ip"), ("6", "ip6")):
        for backend, present in (("nft", (fam, "filter") in nft_tables),
                                 ("legacy", "filter" in _legacy_tables(v or "4"))):
            if not present:
                continue
            binary = f"ip{v}tables-{backend}"
            if not shutil.which(binary + "-save"):
                # a table we cannot read (nor write): a problem, said as such
                missing.append(binary)
                found.iptables.append(fw.IptablesState(binary, "unknown (cannot read it)",
                                                       "", False))
                continue
            res = _run([binary + "-save", "-t", "filter"])
            if res.returncode != 0:
                log.warning("%s-save failed: %s", binary, res.stderr.strip())
                continue
            found.iptables.append(fw.iptables_state(binary, res.stdout, table))
    return found, ruleset, missing


class Firewall:
    """The reconciler one bridge driver owns: :meth:`sync` with the complete list of its
    bridges after every change (an empty list removes everything it added); ``strict`` (a
    network being created) first raises :class:`FirewallError` if the host would drop the
    traffic and aiorun cannot let it through. ``status()`` is what ``info`` shows."""

    def __init__(self, table: str, mode: str | None = None) -> None:
        self.table = table
        self.tag = f"aiorun:{table}"
        self.mode = (mode if mode is not None else os.environ.get("AIORUN_FIREWALL", "auto")
                     ).strip().lower() or "auto"
        # a bad value refuses every network change, never silently means "auto"
        self._mode_error = "" if self.mode in ("auto", "off") else \
            f"AIORUN_FIREWALL must be auto or off, not {self.mode!r}"
        self._lock = threading.Lock()
        self._found: fw.HostFirewall | None = None
        self._done: list[str] = []          # what the last sync added (for info)
        self._key: tuple | None = None      # what the last successful sync saw and did

    # -- API -------------------------------------------------------------------------------
    async def sync(self, bridges: list[fw.FwBridge], strict: bool = False) -> None:
        """Make aiorun's rules in other firewalls match ``bridges`` exactly. ``strict``:
        raise :class:`FirewallError` (a sentence: why, and what to do) before changing
        anything if the host would drop traffic aiorun cannot let through; otherwise such
        problems are only logged and reported in :meth:`status`."""
        await anyio.to_thread.run_sync(self._sync, bridges, strict)

    def status(self) -> dict[str, Any]:
        found = self._found
        return {
            "Checked": found is not None,
            "Mode": self.mode,
            "BridgeNfIptables": bool(found and found.br_netfilter),
            "Iptables": [asdict(s) for s in found.iptables] if found else [],
            "NftablesChains": [asdict(c) for c in found.nft_chains] if found else [],
            "Problems": list(found.problems) if found else [],
            "Rules": list(self._done),
        }

    # -- work (worker thread) --------------------------------------------------------------
    def _sync(self, bridges: list[fw.FwBridge], strict: bool) -> None:
        try:
            self._sync_locked(bridges, strict)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            # a command that hangs or is missing, output that does not parse
            self._key = None
            raise FirewallError(f"cannot inspect or update the host's firewall: {exc}") from exc

    def _sync_locked(self, bridges: list[fw.FwBridge], strict: bool) -> None:
        if self._mode_error:
            raise FirewallError(self._mode_error)
        with self._lock:
            found, ruleset, missing = detect(self.table)
            found.problems = fw.problems(found, self.mode, missing)
            self._found = found
            if found.problems:
                if strict:
                    raise FirewallError(" ".join(found.problems))
                log.warning("host firewall: %s", " ".join(found.problems))
            done: list[str] = []
            add = self.mode != "off" and bool(bridges)
            inserts = fw.render_nft_inserts(found.nft_chains, bridges, self.tag) if add else ""
            current = fw.tagged_rules(ruleset, self.tag)
            key = (tuple(sorted(bridges)), tuple(found.nft_chains), self.mode,
                   tuple((s.binary, s.forward_drops, s.input_drops, s.docker_user)
                         for s in found.iptables))
            if (key == self._key and len(current) == inserts.count("\n")
                    and all(s.ours == (add and found.needs_iptables(s))
                            for s in found.iptables if s.binary not in missing)):
                return                      # nothing changed since the last sync (re-checks)
            self._key = None
            # nftables: drop ours, insert the current set; one transaction
            text = fw.render_nft_deletes(current) + inserts
            if text:
                res = _run(["nft", "-f", "-"], text)
                if res.returncode != 0:
                    raise FirewallError(
                        "cannot add aiorun's accept rules to the host's nftables chains "
                        f"({', '.join(f'{c.family} {c.table} {c.chain}' for c in found.nft_chains)}): "
                        f"{res.stderr.strip()}; accept interfaces aior* there yourself and set "
                        "AIORUN_FIREWALL=off")
            if add:
                done += [f"nft {c.family} {c.table} {c.chain}: accept aiorun's bridges"
                         for c in found.nft_chains if c.table != fw.FIREWALLD_TABLE]
            for st in found.iptables:
                if st.binary in missing:
                    continue
                if add and found.needs_iptables(st):
                    done += self._iptables_install(st, bridges)
                elif st.ours:
                    self._iptables_remove(st)
            self._done = done
            self._key = key

    def _ipt(self, st: fw.IptablesState, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([st.binary, "-w", *args])

    def _iptables_install(self, st: fw.IptablesState, bridges: list[fw.FwBridge]) -> list[str]:
        fwd, inp = fw.chain_names(self.table)
        with_input = bool(st.input_drops)
        text = fw.render_iptables_restore(self.table, bridges, st.binary.startswith("ip6"),
                                          with_input)
        res = _run([st.binary + "-restore", "-w", "--noflush"], text)
        if res.returncode != 0:
            raise FirewallError(f"{st.binary}-restore refused aiorun's chain {fwd}: "
                                f"{res.stderr.strip()}")
        parent = fw.jump_parent(st)
        other = "FORWARD" if parent == "DOCKER-USER" else "DOCKER-USER"
        while self._ipt(st, "-D", other, "-j", fwd).returncode == 0:
            pass                            # Docker appeared/went since the jump was made
        jumps = [(parent, fwd)] + ([("INPUT", inp)] if with_input else [])
        if not with_input:
            self._drop_chain(st, "INPUT", inp)
        for chain, target in jumps:
            if self._ipt(st, "-C", chain, "-j", target).returncode != 0:
                pos = st.position(chain)   # before the final DROP/REJECT/RETURN, else append
                where = ["-I", chain, str(pos)] if pos else ["-A", chain]
                res = self._ipt(st, *where, "-j", target)
                if res.returncode != 0:
                    raise FirewallError(f"{st.binary} refused the jump {chain} -> {target}: "
                                        f"{res.stderr.strip()}")
        return [f"{st.binary}: {c} -> {t} ({st.forward_drops or st.input_drops or 'Docker'})"
                for c, t in jumps]

    def _drop_chain(self, st: fw.IptablesState, parent: str, chain: str) -> None:
        while self._ipt(st, "-D", parent, "-j", chain).returncode == 0:
            pass
        if self._ipt(st, "-F", chain).returncode == 0:
            self._ipt(st, "-X", chain)

    def _iptables_remove(self, st: fw.IptablesState) -> None:
        fwd, inp = fw.chain_names(self.table)
        while self._ipt(st, "-D", "DOCKER-USER", "-j", fwd).returncode == 0:
            pass
        self._drop_chain(st, "FORWARD", fwd)
        self._drop_chain(st, "INPUT", inp)
