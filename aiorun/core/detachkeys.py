"""Detach keys: Docker's ``--detach-keys`` syntax and the escape matcher that watches a stdin
stream for the sequence.

``"ctrl-p,ctrl-q"`` (the default) is a comma-separated list of keys; a key is one character
or ``ctrl-<c>`` where ``<c>`` is a letter or one of ``@ [ \\ ] ^ _``. Pure: the daemon's attach
and exec streams and the CLI's stdin pump use it alike.
"""

from __future__ import annotations

from aiorun.errors import InvalidArgument

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"

_CTRL_SPECIAL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(spec: str) -> bytes:
    """``"ctrl-p,ctrl-q"`` → ``b"\\x10\\x11"``; InvalidArgument in Docker's words otherwise."""
    out = bytearray()
    for key in spec.split(","):
        k = key.strip()
        if len(k) == 1:
            out.append(ord(k))
            continue
        if k.lower().startswith("ctrl-") and len(k) == 6:
            c = k[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            if c in _CTRL_SPECIAL:
                out.append(_CTRL_SPECIAL[c])
                continue
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    if not out or any(b > 0x7F for b in out):
        raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class EscapeMatcher:
    """Feed stdin chunks; get back what to forward and whether the sequence was typed.

    Bytes that may start the sequence are held back until it is complete (detach: they are
    never forwarded) or broken (forwarded then, in order), as Docker's escape proxy does.
    An empty ``keys`` disables detaching.
    """

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = 0      # how many bytes of ``keys`` matched so far

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """``(forward, detached)``: after a detach the rest of ``data`` is dropped."""
        if not self.keys:
            return data, False
        out = bytearray()
        for b in data:
            if b == self.keys[self._held]:
                self._held += 1
                if self._held == len(self.keys):
                    self._held = 0
                    return bytes(out), True
                continue
            if self._held:
                out += self.keys[:self._held]
                self._held = 0
                if b == self.keys[0]:
                    self._held = 1
                    continue
            out.append(b)
        return bytes(out), False
