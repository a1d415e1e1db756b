"""The registry section's pure parts: the OCI layouts it makes (digests that a registry and a
puller will verify) and its table (ratios against the peers)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

from bench.regimages import write_layout
from bench.report import render_registry


def test_layout_digests_match_contents(tmp_path):
    lay = write_layout(tmp_path / "img", [3000, 70000])
    index = json.loads((tmp_path / "img" / "index.json").read_text())
    blobs = tmp_path / "img" / "blobs" / "sha256"
    man_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((blobs / man_digest).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    assert lay.layers == 2 and len(config["rootfs"]["diff_ids"]) == 2
    for desc, diff_id, size in zip(manifest["layers"], config["rootfs"]["diff_ids"],
                                   (3000, 70000)):
        blob = (blobs / desc["digest"].split(":")[1]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == desc["digest"].split(":")[1]
        assert len(blob) == desc["size"]
        tar = gzip.decompress(blob)
        assert "sha256:" + hashlib.sha256(tar).hexdigest() == diff_id
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            (member,) = tf.getmembers()
            assert member.size == size
    assert lay.compressed_bytes == sum(d["size"] for d in manifest["layers"])
    assert not list(blobs.glob(".layer-*"))


def test_registry_table_ratios_against_skopeo():
    def ops(median):
        return [{"image": "many", "op": "pull cold", "stats": {"n": 3, "min": median,
                                                               "median": median,
                                                               "max": median},
                 "mb_per_s": 80.0}]
    text = render_registry({
        "skopeo": {"images": {"many": {"layers": 20, "mb": 80.0}}, "ops": ops(500.0),
                   "errors": []},
        "aiorun[overlay]": {"images": {}, "ops": ops(1000.0), "errors": ["push first: boom"]},
    })
    row = next(ln for ln in text.splitlines() if ln.startswith("aiorun[overlay]"))
    assert row.split()[-1] == "0.50x"
    assert "many: 20 layer(s), 80.0 MB compressed" in text
    assert "! aiorun[overlay]: push first: boom" in text
