"""Resolve a Docker ``--user`` value against a rootfs' /etc/passwd and /etc/group (pure).

Accepted forms, as Docker: "" (root), "name", "uid", "name:group", "uid:gid", "name:gid",
"uid:group". A numeric uid missing from /etc/passwd is allowed (gid 0 unless given); a
name missing from it is an error. Supplementary groups are those of /etc/group listing
the user by name (plus the primary gid).
"""

from __future__ import annotations



class UserError(Exception):
    """The user or group does not exist in the container."""


class User:
    """uid, gid, home and supplementary groups (a plain class: the spawner avoids importing
    dataclasses for start-up time)."""

    def __init__(self, uid: int = 0, gid: int = 0, home: str = "/",
                 groups: list[int] | None = None) -> None:
        self.uid = uid
        self.gid = gid
        self.home = home
        self.groups = list(groups or [])


def _parse(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rows.append(line.split(":"))
    return rows


def resolve(spec: str, passwd: str, group: str) -> User:
    """``spec`` → uid, gid, home and supplementary groups. ``passwd``/``group`` are file texts."""
    spec = spec.strip()
    uname, _, gname = spec.partition(":")
    pw = _parse(passwd)
    gr = _parse(group)
    user = User(uid=0, gid=0, home="/root" if not uname or uname in ("0", "root") else "/")
    name = None
    if uname:
        row = next((r for r in pw if len(r) >= 4 and r[0] == uname), None)
        if row is None and uname.isdigit():
            row = next((r for r in pw if len(r) >= 4 and r[2] == uname), None)
            if row is None:
                user.uid = int(uname)
        if row is not None:
            name = row[0]
            user.uid, user.gid = int(row[2]), int(row[3])
            user.home = row[5] if len(row) > 5 and row[5] else "/"
        elif not uname.isdigit():
            raise UserError(f"unable to find user {uname}: no matching entries in passwd file")
    else:
        name = "root"
        row = next((r for r in pw if len(r) >= 4 and r[0] == "root"), None)
        if row is not None:
            user.home = row[5] if len(row) > 5 and row[5] else "/root"
    if gname:
        grow = next((r for r in gr if len(r) >= 3 and r[0] == gname), None)
        if grow is not None:
            user.gid = int(grow[2])
        elif gname.isdigit():
            user.gid = int(gname)
        else:
            raise UserError(f"unable to find group {gname}: no matching entries in group file")
        user.groups = [user.gid]
    else:
        groups = [user.gid]
        if name:
            for r in gr:
                if len(r) >= 4 and name in r[3].split(",") and r[2].isdigit():
                    g = int(r[2])
                    if g not in groups:
                        groups.append(g)
        user.groups = groups
    return user


def extra_groups(names: list[str], group: str) -> list[int]:
    """``--group-add``: each entry a group name of the container's /etc/group or a gid."""
    rows = _parse(group)
    out = []
    for name in names:
        row = next((r for r in rows if len(r) >= 3 and r[0] == name), None)
        if row is not None and row[2].isdigit():
            out.append(int(row[2]))
        elif name.isdigit():
            out.append(int(name))
        else:
            raise UserError(f"unable to find group {name}: no matching entries in group file")
    return out
