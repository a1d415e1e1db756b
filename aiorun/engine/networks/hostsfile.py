"""The managed peers section of a container's hosts file (name resolution on user networks).

Every container's ``<containers>/<id>/hosts`` gets a section listing its peers (name,
aliases); :func:`write_hosts_section` rewrites it in place whenever a peer joins or leaves.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Iterable

HOSTS_MARK = "# --- aiorun network peers (managed, rewritten on connect/disconnect) ---"


def write_hosts_section(path: Path, entries: list[tuple[str, str]], *,
                        own_ips: Iterable[str] = (), peer_subnets: Iterable[str] = ()) -> None:
    """Replace the managed peers section of a hosts file, in place (truncate + write).

    In place because the file is bind-mounted into the running container: a rename would
    leave the container looking at the old inode. A missing file is left missing. Lines above
    the section that name an address in ``peer_subnets`` other than ``own_ips`` are peer
    entries someone else wrote at start (the containers manager copies ``hosts_entries``);
    they are dropped so that a departed peer does not linger.
    """
    try:
        f = open(path, "r+")
    except FileNotFoundError:
        return
    nets = [ipaddress.ip_network(s, strict=False) for s in peer_subnets]
    own = set(own_ips)

    def is_peer_line(line: str) -> bool:
        first = line.split()[0] if line.split() else ""
        try:
            ip = ipaddress.ip_address(first)
        except ValueError:
            return False
        return first not in own and any(ip in n for n in nets)
    with f:
        text = f.read()
        base = "\n".join(ln for ln in text.split(HOSTS_MARK, 1)[0].rstrip("\n").split("\n")
                         if not is_peer_line(ln))
        lines = [base] if base else []
        if entries:
            lines.append(HOSTS_MARK)
            lines += [f"{ip}\t{name}" for ip, name in entries]
        new = "\n".join(lines) + "\n"
        if new != text:
            f.seek(0)
            f.write(new)
            f.truncate()
