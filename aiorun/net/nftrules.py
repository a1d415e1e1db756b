"""Rule text shared by the ``ip`` and ``ip6`` tables (aiorun.net.nft, aiorun.net.nft6): pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.net.nft import NftBridge


def quote_ifname(name: str) -> str:
    """An interface name as an nft string. Names we render are ours (aior...), but a name
    that could break out of the string is refused, never rendered."""
    if not name or any(c in name for c in '"\\\n ;{}'):
        raise ValueError(f"refusing to render interface name {name!r}")
    return f'"{name}"'


def forward_chain(brs: Sequence["NftBridge"]) -> list[str]:
    """``chain forward``, the same in both families: established traffic, internal networks
    kept in, other aiorun bridges isolated from each other, the rest of ours accepted."""
    q = quote_ifname
    out = ["\tchain forward {",
           "\t\ttype filter hook forward priority filter; policy accept;",
           "\t\tct state established,related accept"]
    for b in brs:
        if b.internal:
            out.append(f"\t\tiifname {q(b.ifname)} oifname != {q(b.ifname)} drop")
            out.append(f"\t\toifname {q(b.ifname)} iifname != {q(b.ifname)} drop")
        elif len(brs) > 1:
            out.append(f'\t\tiifname {q(b.ifname)} oifname != {q(b.ifname)} '
                       f'oifname "aior*" drop')
    for b in brs:
        out.append(f"\t\tiifname {q(b.ifname)} accept")
        out.append(f"\t\toifname {q(b.ifname)} accept")
    out.append("\t}")
    return out
