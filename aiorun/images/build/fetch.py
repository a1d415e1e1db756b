"""``ADD <http(s) URL> <dest>``: the daemon downloads the file (the RUN steps' network has
nothing to do with it, as with Docker), into the build's work directory; ``--checksum=
sha256:<hex>`` must match what was downloaded. No proxy is used. The file is not unpacked
(an ADD of a URL never is); :func:`~.copyfiles.copy_sources` writes it with mode 0600.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import anyio.to_thread

from aiorun.errors import InvalidArgument
from aiorun.images.build.dockerfile import Instruction, expand_word
from aiorun.images.build.flags import flag

#: How long one download may stall (connect, or between reads).
TIMEOUT = 30.0


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _download(url: str, dest: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except urllib.error.HTTPError as exc:
        raise InvalidArgument(f"failed to GET {url} with status {exc.code}: "
                              f"{exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InvalidArgument(f"failed to GET {url}: {reason}") from None


async def fetch_urls(ins: Instruction, env: dict[str, str], work: Path) -> dict[str, Path]:
    """Download the http(s) sources of ADD ``ins`` into ``work``; URL -> file. Another
    scheme (``git@``, ``ftp://``) is refused by name."""
    words = [expand_word(w, env, ins.escape) for w in ins.args]
    out: dict[str, Path] = {}
    for src in words[:-1]:
        if "://" not in src:
            continue
        if not src.lower().startswith(("http://", "https://")):
            raise InvalidArgument(f"ADD {src}: only http(s) URLs are supported by aiorun")
        dest = work / f"download-{secrets.token_hex(6)}"
        await anyio.to_thread.run_sync(_download, src, dest)
        out[src] = dest
    checksum = flag(ins, "checksum")
    if checksum is not None and out:
        want = expand_word(checksum, env, ins.escape)
        got = await anyio.to_thread.run_sync(file_digest, next(iter(out.values())))
        if got != want:
            raise InvalidArgument(f"digest mismatch {got}: {want}")
    return out
