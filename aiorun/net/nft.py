"""aiorun's nftables table: rendered whole from the current state, applied atomically.

Nothing here edits rules one by one. :func:`render` turns the complete state (bridges and
published ports) into the text of one table; :class:`NftApplier` loads it with ``nft -f -`` in
a single transaction that first makes sure the table exists, deletes it, and re-creates it.
Other tables (Docker's, firewalld's, ...) are never touched.

What the table does (IPv4, family ``ip``):

* ``prerouting`` (nat, dstnat) and ``output`` (nat, -100): packets addressed to one of the
  host's own addresses (``fib daddr type local``: any interface address, the bridges' gateways,
  127.0.0.1) jump to ``published``, which DNATs each published host port to its container.
  ``output`` covers locally generated traffic (``curl 127.0.0.1:4000``); ``prerouting`` covers
  traffic from other hosts/namespaces and from containers (hairpin).
* ``prerouting`` also sends DNS queries (UDP and TCP) leaving a user network to that network's name
  server on its gateway (:mod:`aiorun.net.dns`), whatever resolver the container asked.
* ``postrouting`` (nat, srcnat): masquerade traffic from a bridge subnet leaving through any
  other interface; masquerade 127.0.0.0/8 sources leaving through a bridge (the DNAT'd
  loopback case; it also needs ``route_localnet=1`` on the bridge); masquerade DNAT'd
  traffic from a bridge's subnet back into the same bridge (hairpin: otherwise the peer's
  reply would bypass the host and the connection would not match).
* ``forward`` (filter): established/related accepted, different aiorun bridges isolated from
  each other, traffic into and out of aiorun bridges accepted (internal networks: only inside
  the bridge).

Applying goes through libnftables in process when it loads (~1 ms instead of ~25 ms for
spawning ``nft``; ``AIORUN_NFT_EXEC=1`` forces ``nft -f -``); the text and the
one-transaction semantics are the same either way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Iterable

import anyio

from aiorun.errors import AiorunError, Unavailable
from aiorun.net.nft6 import transaction6
from aiorun.net.nftrules import forward_chain, quote_ifname

DEFAULT_TABLE = "aiorun"


class NftError(AiorunError):
    """``nft`` refused our ruleset; the message carries its stderr."""


@dataclass(frozen=True, order=True)
class NftBridge:
    ifname: str
    subnet: str
    internal: bool = False
    dns: str = ""          # gateway address of the network's DNS server ("" = none)
    subnet6: str = ""      # IPv6 subnet ("" = IPv4 only); rendered by aiorun.net.nft6
    nat6: bool = True      # masquerade the IPv6 subnet on the way out
    dns6: str = ""         # the DNS server's IPv6 gateway address ("" = none; nft6)


@dataclass(frozen=True, order=True)
class NftPort:
    protocol: str          # tcp | udp | sctp
    host_port: int
    host_ip: str           # "" = every local address
    container_ip: str
    container_port: int
    container_ip6: str = ""  # the endpoint's IPv6 address (DNAT in the ip6 table)


_q = quote_ifname


def render_table(table: str, bridges: Iterable[NftBridge], ports: Iterable[NftPort]) -> str:
    """The full ``table ip <table> { ... }`` text for this state (deterministic order)."""
    brs = sorted(set(bridges))
    pts = sorted(set(ports))
    out = [f"table ip {table} {{"]
    out += ["\tchain prerouting {",
            "\t\ttype nat hook prerouting priority dstnat; policy accept;"]
    for b in brs:
        if b.dns:
            out.append(f"\t\tiifname {_q(b.ifname)} ip saddr {ipaddress.IPv4Network(b.subnet)} "
                       f"meta l4proto {{ tcp, udp }} th dport 53 "
                       f"dnat to {ipaddress.IPv4Address(b.dns)}:53")
    out += ["\t\tfib daddr type local jump published",
            "\t}",
            "\tchain output {",
            "\t\ttype nat hook output priority -100; policy accept;",
            "\t\tfib daddr type local jump published",
            "\t}",
            "\tchain published {"]
    for p in pts:
        if ":" in p.host_ip:
            continue  # published on one IPv6 address: the ip6 table's (aiorun.net.nft6)
        match = f"ip daddr {ipaddress.IPv4Address(p.host_ip)} " if p.host_ip else ""
        cip = ipaddress.IPv4Address(p.container_ip)
        out.append(f"\t\t{match}{p.protocol} dport {int(p.host_port)} "
                   f"dnat to {cip}:{int(p.container_port)}")
    out += ["\t}",
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    for b in brs:
        net = ipaddress.IPv4Network(b.subnet)
        out.append(f"\t\toifname {_q(b.ifname)} ip saddr 127.0.0.0/8 masquerade")
        out.append(f"\t\toifname {_q(b.ifname)} ip saddr {net} ct status dnat masquerade")
        if not b.internal:
            out.append(f"\t\toifname != {_q(b.ifname)} ip saddr {net} masquerade")
    out += ["\t}"] + forward_chain(brs) + ["}"]
    return "\n".join(out) + "\n"


def render_transaction(table: str, bridges: Iterable[NftBridge],
                       ports: Iterable[NftPort]) -> str:
    """The ``nft -f`` input replacing our tables (``ip`` and ``ip6``, see
    :mod:`aiorun.net.nft6`) atomically; just their removal when no bridges."""
    brs, pts = list(bridges), list(ports)
    head = f"table ip {table}\ndelete table ip {table}\n"
    v6 = transaction6(table, brs, pts)
    if not brs:
        return head + v6
    return head + render_table(table, brs, pts) + v6


class _LibNft:
    """In-process libnftables (the library behind ``nft``), used when it can be loaded.

    ``nft -f -`` costs ~25 ms per run (process start, cache load); the library call with the
    same text and the same one-transaction semantics costs ~1 ms for a hundred rules. One
    context per instance; calls are serialised by the caller (the applier's lock).
    """

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        if not self.ctx:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)

    @classmethod
    def load(cls) -> "_LibNft | None":
        if os.environ.get("AIORUN_NFT_EXEC"):  # force the `nft -f -` path
            return None
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        except OSError:
            return None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error", "nft_ctx_free"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        try:
            return cls(lib)
        except OSError:
            return None

    def run(self, text: str) -> str | None:
        """Apply ``text``; None on success, else nft's error text."""
        rc = self.lib.nft_run_cmd_from_buffer(self.ctx, text.encode())
        err = self.lib.nft_ctx_get_error_buffer(self.ctx) or b""
        return None if rc == 0 else (err.decode(errors="replace").strip() or f"rc {rc}")

    def __del__(self) -> None:
        ctx, self.ctx = getattr(self, "ctx", None), None
        if ctx:
            self.lib.nft_ctx_free(ctx)


def nft_unavailable_reason() -> str | None:
    if shutil.which("nft") or ctypes.util.find_library("nftables"):
        return None
    return "nftables is not installed (neither the nft command nor libnftables)"


async def run_nft(text: str, lib: "_LibNft | None" = None) -> None:
    """Apply ``text`` in one nftables transaction: in process through ``lib`` when given,
    else with ``nft -f -``."""
    if lib is not None:
        err = await anyio.to_thread.run_sync(lib.run, text)
        if err is not None:
            raise NftError(f"nft rejected aiorun's ruleset: {err}")
        return
    if not shutil.which("nft"):
        raise Unavailable(nft_unavailable_reason() or "the nft command is not installed")
    res = await anyio.run_process(["nft", "-f", "-"], input=text.encode(), check=False)
    if res.returncode != 0:
        raise NftError("nft rejected aiorun's ruleset: "
                       f"{res.stderr.decode(errors='replace').strip()}")


async def delete_table(table: str) -> None:
    await run_nft(f"table ip {table}\ndelete table ip {table}\n" + transaction6(table, [], []))


async def table_exists(table: str) -> bool:
    res = await anyio.run_process(["nft", "list", "table", "ip", table], check=False)
    return res.returncode == 0


class NftApplier:
    """Coalescing applier: callers change the state, then ``await sync()``.

    ``sync`` returns once a ruleset rendered *after* the caller's change is loaded. While one
    ``nft -f`` runs, further callers queue on the lock; the first of them renders everything
    changed so far, and the rest find their change already applied and return at once. So a
    burst of N container starts costs about two ``nft`` runs, not N.
    """

    def __init__(self, table: str, state: Callable[[], tuple[Iterable[NftBridge],
                                                             Iterable[NftPort]]]) -> None:
        self.table = table
        self._state = state
        self._lock = anyio.Lock()
        self._changed = 0      # bumped by every sync() call
        self._applied = 0      # highest change number known to be loaded
        self.runs = 0          # nft invocations, for tests/benchmarks
        self.last_text = ""
        self._lib = _LibNft.load()

    async def sync(self) -> None:
        self._changed += 1
        mine = self._changed
        async with self._lock:
            if self._applied >= mine:
                return
            upto = self._changed
            bridges, ports = self._state()
            text = render_transaction(self.table, bridges, ports)
            self.runs += 1
            await run_nft(text, self._lib)
            self.last_text = text
            self._applied = upto
