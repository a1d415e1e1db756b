"""Image tags under disk-full and a corrupt repositories.json (issue 11, item 8).

The store's root is on a small tmpfs the test mounts (and unmounts); ENOSPC is the kernel's.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from aiorun.bus.bus import EventBus
from aiorun.config import Paths
from aiorun.drivers.select import select_storage
from aiorun.errors import NotFound, Unavailable
from aiorun.images.store import ImageStore
from aiorun.testing.diskfull import fill, small_tmpfs

pytestmark = [pytest.mark.integration, pytest.mark.anyio,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def tmpfs_paths(tmp_path: Path) -> Iterator[Paths]:
    with small_tmpfs(tmp_path / "fs", "8m") as fs:
        paths = Paths(root=fs / "root", run=Path(tempfile.mkdtemp(prefix="aiorun-run-",
                                                                 dir="/tmp")))
        paths.ensure()
        try:
            yield paths
        finally:
            os.system(f"rm -rf --one-file-system {paths.run}")


async def _store(paths: Paths) -> ImageStore:
    storage, _ = select_storage(paths, "copy")
    store = ImageStore(paths, storage, EventBus())
    await store.start()
    return store


async def test_tag_and_untag_on_a_full_disk_change_nothing(tmpfs_paths: Paths) -> None:
    store = await _store(tmpfs_paths)
    img = await store.import_tar(io.BytesIO(_tar({"hello": b"hi"})), tags=["app:1", "app:2"])
    filler = fill(tmpfs_paths.root.parent)

    with pytest.raises(Unavailable, match="no space left on device: cannot save the image "
                                          "tags"):
        await store.tag("app:1", "app:3")
    with pytest.raises(NotFound):          # not half-applied: not visible now ...
        store.resolve("app:3")
    with pytest.raises(Unavailable, match="no space left on device"):
        await store.remove("app:2")        # untag refused: both tags stay
    assert store.resolve("app:2").id == img.id
    assert store.resolve(img.id).repo_tags == ["app:1", "app:2"]

    again = await _store(tmpfs_paths)      # ... and the same after a restart
    assert again.resolve(img.id).repo_tags == ["app:1", "app:2"]

    filler.unlink()                        # space is back: the same calls work
    await store.tag("app:1", "app:3")
    assert await store.remove("app:2") == [{"Untagged": "app:2"}]
    after = await _store(tmpfs_paths)
    assert after.resolve(img.id).repo_tags == ["app:1", "app:3"]


async def test_corrupt_repositories_json_is_quarantined(tmpfs_paths: Paths,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    store = await _store(tmpfs_paths)
    img = await store.import_tar(io.BytesIO(_tar({"a": b"1"})), tags=["app:1"])
    store.repos_file.write_bytes(b'{"Repositories": {"app": ')   # torn by a crash, say
    with caplog.at_level(logging.ERROR, logger="aiorun.images.store"):
        again = await _store(tmpfs_paths)
    assert "is corrupt" in caplog.text
    aside = [p.name for p in store.repos_file.parent.iterdir()
             if p.name.startswith("repositories.json.corrupt-")]
    assert len(aside) == 1
    assert again.resolve(img.id).repo_tags == []   # images kept, tags start empty
    await again.tag(img.id, "app:1")
    assert again.resolve("app:1").id == img.id
