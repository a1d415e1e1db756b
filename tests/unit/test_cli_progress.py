"""The CLI's progress renderer (aiorun/cli/progress.py): Docker's JSON progress messages drawn
in place on a terminal, as plain lines otherwise; byte transfers reported the same way."""

from __future__ import annotations

import io
import json

import pytest

from aiorun.cli.progress import (ProgressPrinter, Transfer, bar, file_size, human, reading,
                                 render_stream)


@pytest.mark.parametrize("n,text", [(0, "0B"), (999, "999B"), (1000, "1kB"),
                                    (1234567, "1.235MB"), (1048576, "1.049MB"), (5 * 10**9, "5GB")])
def test_human(n, text):
    assert human(n) == text


@pytest.mark.parametrize("cur,total,text", [
    (0, 100, "[" + " " * 50 + "] 0B/100B"),
    (50, 100, "[" + "=" * 24 + ">" + " " * 25 + "] 50B/100B"),
    (100, 100, "[" + "=" * 49 + ">] 100B/100B"),
    (2000, None, "2kB"),                       # total unknown: just the size
])
def test_bar(cur, total, text):
    assert bar(cur, total) == text


LAYER = [{"status": "Pulling from app", "id": "1"},
         {"status": "Pulling fs layer", "id": "aaa", "progressDetail": {}},
         {"status": "Pulling fs layer", "id": "bbb", "progressDetail": {}},
         {"status": "Downloading", "id": "aaa", "progressDetail": {"current": 1, "total": 4},
          "progress": "[==>] 1B/4B"},
         {"status": "Downloading", "id": "aaa", "progressDetail": {"current": 2, "total": 4},
          "progress": "[===>] 2B/4B"},
         {"status": "Pull complete", "id": "bbb", "progressDetail": {}},
         {"status": "Digest: sha256:x"}]


def test_plain_lines_off_a_terminal():
    out = io.StringIO()
    p = ProgressPrinter(out, tty=False)
    for m in LAYER:
        p.show(m)
    assert out.getvalue() == ("1: Pulling from app\naaa: Pulling fs layer\nbbb: Pulling fs "
                              "layer\naaa: Downloading\nbbb: Pull complete\n"
                              "Digest: sha256:x\n")
    assert "\x1b" not in out.getvalue()


def test_rows_rewritten_in_place_on_a_terminal():
    out = io.StringIO()
    p = ProgressPrinter(out, tty=True)
    for m in LAYER:
        p.show(m)
    text = out.getvalue()
    # aaa is two rows up when it is rewritten; bbb one
    assert "\x1b[2A\r\x1b[2Kaaa: Downloading [===>] 2B/4B\x1b[2B\r" in text
    assert "\x1b[1A\r\x1b[2Kbbb: Pull complete\x1b[1B\r" in text
    assert text.startswith("1: Pulling from app\naaa: Pulling fs layer\n")
    assert text.endswith("Digest: sha256:x\n")


def test_render_stream_reports_errors(capsys):
    class Resp:
        def iter_lines(self):
            yield json.dumps(LAYER[1]).encode()
            yield b"not json"
            yield json.dumps({"error": "boom", "errorDetail": {"message": "boom"}}).encode()

    out = io.StringIO()
    assert render_stream(Resp(), ProgressPrinter(out, False)) == 1
    assert out.getvalue() == "aaa: Pulling fs layer\n"
    assert capsys.readouterr().err == "boom\n"


@pytest.mark.parametrize("tty", [False, True])
def test_transfer_of_a_file(tmp_path, tty):
    f = tmp_path / "img.tar"
    f.write_bytes(b"x" * (1 << 20))
    out = io.StringIO()
    t = Transfer(ProgressPrinter(out, tty), "img.tar", "Uploading", "Uploaded",
                 file_size(open(f, "rb")))
    with open(f, "rb") as src:
        body = b"".join(reading(src, t))
    assert body == f.read_bytes()
    text = out.getvalue()
    if tty:
        assert text.startswith("img.tar: Uploading [")
        assert "img.tar: Uploading [" + "=" * 49 + ">] 1.049MB/1.049MB" in text
        assert text.endswith("\x1b[2Kimg.tar: Uploaded 1.049MB\x1b[1B\r")
    else:    # one line per status: start and end
        assert text == "img.tar: Uploading\nimg.tar: Uploaded 1.049MB\n"


def test_file_size_of_a_pipe_is_unknown():
    import os
    r, w = os.pipe()
    try:
        with open(r, "rb") as f:
            assert file_size(f) is None
    finally:
        os.close(w)
    assert file_size(io.BytesIO(b"x")) is None
