"""json-file rotation (aiorun.runtime.logfile; issue 11 item 6: max-size/max-file ignored):
the pure cutting, the writer on a real directory, and the engine's reading across files."""

from __future__ import annotations

import json
import os

import pytest

from aiorun.engine.containers.logs import read_log
from aiorun.engine.containers.start import log_rotation
from aiorun.runtime.logfile import JsonLog, rotated_paths, split_for_rotation


def lines_of(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def test_split_fits():
    assert split_for_rotation(b"a\nb\n", 0, 10) == [b"a\nb\n"]
    assert split_for_rotation(b"a\nb\n", 6, 10) == [b"a\nb\n"]        # exactly full


def test_split_rotates_between_whole_entries():
    data = b"aaa\nbbb\nccc\n"
    assert split_for_rotation(data, 0, 8) == [b"aaa\nbbb\n", b"ccc\n"]
    assert split_for_rotation(data, 5, 8) == [b"", b"aaa\nbbb\n", b"ccc\n"]   # rotate first
    assert split_for_rotation(data, 2, 8) == [b"aaa\n", b"bbb\nccc\n"]


def test_split_entry_larger_than_the_cap_goes_whole_into_a_fresh_file():
    data = b"0123456789\nab\n"
    assert split_for_rotation(data, 0, 4) == [b"0123456789\n", b"ab\n"]
    assert split_for_rotation(data, 3, 4) == [b"", b"0123456789\n", b"ab\n"]
    assert split_for_rotation(b"0123456789\n", 0, 4) == [b"0123456789\n"]
    for size, cap in ((0, 4), (3, 4), (0, 1), (7, 9)):
        assert b"".join(split_for_rotation(data, size, cap)) == data


def write_lines(log: JsonLog, n: int, width: int = 80) -> None:
    for i in range(n):
        log.write(1, f"line {i:07d} {'x' * width}\n".encode())


def entries(path: str) -> list[str]:
    with open(path, "rb") as f:
        return [json.loads(line)["log"] for line in f]


def test_writer_rotates_max_size_and_max_file(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = JsonLog(path, max_size=100_000, max_file=3)
    write_lines(log, 10_000)           # ~1.4 MB of JSON
    log.close()
    assert sorted(os.listdir(tmp_path)) == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    assert rotated_paths(path) == [path + ".2", path + ".1"]
    kept: list[str] = []
    for p in rotated_paths(path) + [path]:
        assert 0 < os.path.getsize(p) <= 100_000
        kept += entries(p)
    numbers = [int(e.split()[1]) for e in kept]
    assert numbers == list(range(numbers[0], 10_000))       # contiguous, newest last


def test_writer_max_file_1_truncates_in_place(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = JsonLog(path, max_size=10_000, max_file=1)
    write_lines(log, 1000)
    log.close()
    assert os.listdir(tmp_path) == ["c-json.log"]
    assert 0 < os.path.getsize(path) <= 10_000
    assert entries(path)[-1].startswith("line 0000999 ")


def test_writer_without_max_size_never_rotates(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = JsonLog(path)
    write_lines(log, 2000)
    log.close()
    assert os.listdir(tmp_path) == ["c-json.log"] and len(entries(path)) == 2000


def test_reopened_log_counts_what_is_there(tmp_path):
    path = str(tmp_path / "c-json.log")
    JsonLog(path, 10_000, 2).close()
    log = JsonLog(path, 10_000, 2)
    write_lines(log, 50)
    log.close()
    log = JsonLog(path, 10_000, 2)          # a restart appends to the same file
    assert log.size == os.path.getsize(path)
    write_lines(log, 100)
    log.close()
    assert os.path.getsize(path) <= 10_000


def test_log_rotation_from_log_config():
    assert log_rotation(None) == {}
    assert log_rotation({"Type": "json-file", "Config": {}}) == {}
    assert log_rotation({"Config": {"max-size": "10m", "max-file": "2"}}) == \
        {"log_max_size": 10_000_000, "log_max_file": 2}
    assert log_rotation({"Config": {"max-size": "1k"}}) == {"log_max_size": 1000,
                                                             "log_max_file": 1}


class _Stopped:
    """Just what ``read_log`` asks of a container: not running."""

    class state:
        running = False
    gone = False


@pytest.mark.anyio
async def test_logs_read_across_rotated_files(tmp_path):
    path = tmp_path / "c-json.log"
    log = JsonLog(str(path), max_size=50_000, max_file=3)
    write_lines(log, 1000)
    log.close()

    async def read(tail):
        return [line async for _s, line, _t in
                read_log(_Stopped(), path, False, True, True, tail, 0, 0)]  # type: ignore[arg-type]
    everything = await read(None)
    first = int(everything[0].split()[1])
    assert [int(e.split()[1]) for e in everything] == list(range(first, 1000))
    assert everything[-1].startswith("line 0000999 ")
    assert len(await read(3)) == 3 and (await read(3))[-1].startswith("line 0000999 ")
    current = len(entries(str(path)))
    assert len(everything) == current + sum(len(entries(p)) for p in rotated_paths(str(path)))
    assert len(everything) > current
    # a tail longer than the current file reaches into the rotated ones
    assert await read(current + 5) == everything[-(current + 5):]


class _Running:
    """A container that runs until the test says so."""

    def __init__(self) -> None:
        self.state = type("State", (), {"running": True})()
        self.gone = False


@pytest.mark.anyio
async def test_follow_goes_on_across_rotations(tmp_path):
    """``logs -f`` keeps reading when the spawner rotates the file under it: the rest of the
    old file (now ``.1``) first, then the new one. The writer waits for the reader after
    each batch, so no rotation can outrun the poll."""
    import anyio
    path = tmp_path / "c-json.log"
    log = JsonLog(str(path), max_size=3_000, max_file=2)
    c = _Running()
    seen: list[str] = []

    async def follow() -> None:
        async for _s, line, _t in read_log(c, path, True, True, True, None, 0, 0):  # type: ignore[arg-type]
            seen.append(line)

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        n = 0
        for _batch in range(12):            # ~1.2 KB per batch: a rotation every ~2 batches
            for _ in range(12):
                log.write(1, f"line {n:07d} {'x' * 40}\n".encode())
                n += 1
            with anyio.fail_after(30):
                while len(seen) < n:
                    await anyio.sleep(0.01)
        c.state.running = False
    log.close()
    assert [int(s.split()[1]) for s in seen] == list(range(n))
    assert os.path.exists(f"{path}.1")
