"""``python -m bench.netattach [--n N]``: bridge attach + detach per container (median).

Short (about 10 s): the bridge driver alone (no daemon, no containers), in a private network
namespace of its own (the command re-executes itself under ``unshare --net``), so nothing
touches the host's links, tables or sysctls. For each variant, N namespaces (one
``sleep`` process each, as a container's) are attached one after another, then each holder
is killed and then every endpoint detached — the order of a real container exit, where
the namespace is gone before the engine detaches. Then N attaches at once (``--concurrent``)
through one task group: total time and the number of nft loads the applier coalesced.

Variants: IPv4 only; dual-stack (IPv4 + IPv6); each with one published TCP port per
container (adds an nft load at attach and detach; dual-stack also the ``[::1]`` proxy
listener). Medians are what to read: on a shared 2-core host single runs jump by 3-5x.
``CPU/attach`` is this process's CPU time (user + system, so the kernel's netlink and nft
work done on its behalf too) over the sequential attaches, divided by N: steadier than the
wall clock on a busy host.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from aiorun.drivers.network import EndpointRequest, NetworkConfig, PortMapping


def _holders(n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen(["unshare", "--net", "sleep", "600"]) for _ in range(n)]
    me = os.readlink("/proc/self/ns/net")
    for p in procs:
        while os.readlink(f"/proc/{p.pid}/ns/net") == me:
            time.sleep(0.001)
    return procs


async def _variant(name: str, net: NetworkConfig, n: int, ports: bool,
                   base: Path) -> dict[str, float]:
    from aiorun_plugins.network.bridge import BridgeDriver
    drv = BridgeDriver(base / name)
    cfg = await drv.create_network(net)
    procs = _holders(n)
    attach, detach, eps = [], [], []
    try:
        cpu0 = time.process_time()
        for i, p in enumerate(procs):
            req = EndpointRequest(container_id=f"{name}{i:060d}", netns_path=f"/proc/{p.pid}/ns/net",
                                  hostname="", ports=[PortMapping(80, "tcp", "", 20000 + i)]
                                  if ports else [])
            t = time.perf_counter()
            eps.append(await drv.attach(cfg, req))
            attach.append(time.perf_counter() - t)
        attach_cpu = (time.process_time() - cpu0) / n
        for p in procs:          # every container exits, then the engine detaches each
            p.kill()
            p.wait()
        for ep in eps:
            t = time.perf_counter()
            await drv.detach(cfg, ep)
            detach.append(time.perf_counter() - t)
        procs = _holders(n)
        t = time.perf_counter()
        runs0 = drv.nft.runs
        eps = [None] * n

        async def one(i: int, p: subprocess.Popen) -> None:
            eps[i] = await drv.attach(cfg, EndpointRequest(
                container_id=f"c{name}{i:059d}", netns_path=f"/proc/{p.pid}/ns/net",
                hostname="", ports=[PortMapping(80, "tcp", "", 21000 + i)] if ports else []))
        async with anyio.create_task_group() as tg:
            for i, p in enumerate(procs):
                tg.start_soon(one, i, p)
        concurrent = time.perf_counter() - t
        nft_loads = drv.nft.runs - runs0
        for p in procs:
            p.kill()
            p.wait()
        for ep in eps:
            if ep is not None:
                await drv.detach(cfg, ep)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        await drv.delete_network(cfg)
        await drv.reset()
    ms = 1000.0
    return {"attach_median_ms": statistics.median(attach) * ms,
            "detach_median_ms": statistics.median(detach) * ms,
            "attach_plus_detach_median_ms": statistics.median(
                a + d for a, d in zip(attach, detach)) * ms,
            "attach_p90_ms": sorted(attach)[int(0.9 * n)] * ms,
            "attach_cpu_ms": attach_cpu * ms,
            "concurrent_total_s": concurrent, "concurrent_nft_loads": nft_loads}


async def _main(n: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="aiorun-bench-net-"))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    variants = [
        ("v4", NetworkConfig("v4", "a" * 64, "bridge", subnet="10.77.0.0/16"), False),
        ("dual", NetworkConfig("dual", "b" * 64, "bridge", subnet="10.78.0.0/16",
                               enable_ipv6=True, subnet6="fd77:78::/64"), False),
        ("v4+port", NetworkConfig("v4p", "d" * 64, "bridge", subnet="10.76.0.0/16"), True),
        ("dual+port", NetworkConfig("dualp", "c" * 64, "bridge", subnet="10.79.0.0/16",
                                    enable_ipv6=True, subnet6="fd77:79::/64"), True),
    ]
    print(f"bridge attach + detach, N = {n} (sequential), then N concurrent attaches")
    print(f"{'variant':<10} {'attach':>8} {'detach':>8} {'a+d':>8} {'attach p90':>11} "
          f"{'CPU/attach':>10} {'N at once':>10} {'nft loads':>9}")
    try:
        for name, cfg, ports in variants:
            r = await _variant(name, cfg, n, ports, base)
            print(f"{name:<10} {r['attach_median_ms']:>6.2f}ms {r['detach_median_ms']:>6.2f}ms "
                  f"{r['attach_plus_detach_median_ms']:>6.2f}ms {r['attach_p90_ms']:>9.2f}ms "
                  f"{r['attach_cpu_ms']:>8.2f}ms "
                  f"{r['concurrent_total_s']:>9.2f}s {r['concurrent_nft_loads']:>9}")
    finally:
        subprocess.run(["rm", "-rf", str(base)])


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.netattach")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.inner:
        return subprocess.call(["unshare", "--net", sys.executable, "-m", "bench.netattach",
                                "--n", str(args.n), "--inner"])
    anyio.run(_main, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
