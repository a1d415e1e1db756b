"""The managed peers section of a container's hosts file (aiorun.engine.networks)."""

from aiorun.engine.networks import HOSTS_MARK, write_hosts_section


def test_section_rewritten_in_place(tmp_path):
    f = tmp_path / "hosts"
    f.write_text("127.0.0.1\tlocalhost\n10.9.0.2\tme\n10.9.0.3\told-peer\n")
    ino = f.stat().st_ino
    write_hosts_section(f, [("10.9.0.4", "web")], own_ips={"10.9.0.2"},
                        peer_subnets=["10.9.0.0/24"])
    assert f.read_text() == f"127.0.0.1\tlocalhost\n10.9.0.2\tme\n{HOSTS_MARK}\n10.9.0.4\tweb\n"
    write_hosts_section(f, [], own_ips={"10.9.0.2"}, peer_subnets=["10.9.0.0/24"])
    assert f.read_text() == "127.0.0.1\tlocalhost\n10.9.0.2\tme\n"
    assert f.stat().st_ino == ino  # same inode: the bind mount keeps seeing it


def test_missing_file_left_missing(tmp_path):
    write_hosts_section(tmp_path / "nope", [("10.0.0.1", "x")])
    assert not (tmp_path / "nope").exists()
