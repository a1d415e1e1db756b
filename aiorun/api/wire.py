"""JSON and URL encoding for the CLI's API client, without the standard library's heavy
modules.

``import json`` costs ≈ 5–7 ms of every CLI start (``json.decoder`` imports and compiles
``re``, which pulls in ``enum``, ``functools`` and ``collections``), and ``urllib.parse``
another ≈ 2–3 ms (``ipaddress``, ``collections``): together about a third of what the CLI
process adds to ``aiorun run``. The C accelerator ``_json`` (what ``json`` itself uses) needs
none of that, and percent-encoding is a few lines.

Contract: :func:`dumps`, :func:`loads`, :func:`quote` and :func:`urlencode` return exactly
what ``json.dumps``/``json.loads``/``urllib.parse.quote``/``urllib.parse.urlencode`` (with
their defaults; ``quote_plus`` for the query) return for the same input, and raise the same
errors: whenever the fast path cannot answer (no ``_json``, an object it cannot encode, a
document it cannot decode), the standard module is imported and gives the answer or the
exception. ``tests/unit/test_api_wire.py`` checks the equivalence.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any, Callable

try:
    import _json
except ImportError:                 # an interpreter without the accelerator: json does it
    _json = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- JSON

def _not_serializable(o: Any) -> Any:
    # The fast encoder gives up; dumps() then asks json for its exact error.
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def _encoder() -> Callable[[Any], str] | None:
    """``json.dumps`` with its defaults (ensure_ascii, ", "/": " separators, circular check,
    NaN allowed) on the C encoder; None when that encoder is not there."""
    if _json is None:
        return None
    make = getattr(_json, "make_encoder", None)
    esc = getattr(_json, "encode_basestring_ascii", None)
    if make is None or esc is None:
        return None

    def encode(o: Any) -> str:
        # a fresh markers dict per call: the circular-reference check of json.dumps
        return "".join(make({}, _not_serializable, esc, None, ": ", ", ", False, False,
                            True)(o, 0))
    return encode


class _DecodeContext:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder`` (defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    # json's constants: NaN, Infinity, -Infinity
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                      "-Infinity": float("-inf")}.__getitem__
    memo: dict[str, str] = {}


def _scanner() -> Callable[[str, int], tuple[Any, int]] | None:
    make = getattr(_json, "make_scanner", None) if _json is not None else None
    return make(_DecodeContext()) if make is not None else None


_encode = _encoder()
_scan = _scanner()
_WS = " \t\n\r"                     # JSON's whitespace (json.decoder.WHITESPACE)


def dumps(obj: Any) -> str:
    """``json.dumps(obj)``."""
    if _encode is not None:
        try:
            return _encode(obj)
        except Exception:
            pass                    # json raises its own error (or encodes a str subclass...)
    import json
    return json.dumps(obj)


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)``; bytes must be UTF-8 here (the daemon's answers are), anything
    else goes to ``json.loads``, which detects UTF-16/32 or raises its error."""
    if _scan is not None:
        try:
            s = data if isinstance(data, str) else bytes(data).decode("utf-8")
            start = len(s) - len(s.lstrip(_WS))
            obj, end = _scan(s, start)
            if not s[end:].strip(_WS):
                return obj
        except Exception:           # StopIteration, JSONDecodeError, UnicodeDecodeError...
            pass
    import json
    return json.loads(data)


# --------------------------------------------------------------------------- URLs

_ALWAYS_SAFE = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_tables: dict[str, list[str]] = {}


def _table(safe: str) -> list[str]:
    """Byte -> its text in a URL: itself when safe, else ``%XX`` (uppercase, as urllib)."""
    t = _tables.get(safe)
    if t is None:
        ok = _ALWAYS_SAFE + bytes(c for c in safe.encode("ascii", "ignore"))
        t = [chr(b) if b in ok else f"%{b:02X}" for b in range(256)]
        _tables[safe] = t
    return t


def quote(s: str | bytes, safe: str = "/") -> str:
    """``urllib.parse.quote(s, safe)``: UTF-8, every byte outside the unreserved set and
    ``safe`` percent-encoded."""
    bs = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    t = _table(safe)
    return "".join([t[b] for b in bs])


def quote_plus(s: str | bytes, safe: str = "") -> str:
    """``urllib.parse.quote_plus(s, safe)``: as :func:`quote`, a space becomes ``+``."""
    if (" " if isinstance(s, str) else b" ") not in s:    # type: ignore[operator]
        return quote(s, safe)
    return quote(s, safe + " ").replace(" ", "+")


def urlencode(query: dict[Any, Any]) -> str:
    """``urllib.parse.urlencode(query)`` (``doseq=False``): ``k=v`` pairs joined by ``&``;
    bytes are encoded as they are, anything else as ``str()`` of it."""
    def one(x: Any) -> str:
        return quote_plus(x if isinstance(x, (str, bytes)) else str(x))
    return "&".join(f"{one(k)}={one(v)}" for k, v in query.items())
