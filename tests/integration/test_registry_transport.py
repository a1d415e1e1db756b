"""RegistryClient against a real distribution registry on loopback (Debian's
docker-registry): open, htpasswd basic auth (right and wrong credentials), unreachable."""

from __future__ import annotations

import anyio
import pytest

from aiorun.registry.auth import Credentials
from aiorun.registry.transport import (RegistryClient, RegistryUnauthorized,
                                       RegistryUnavailable)
from aiorun.testing.registry import start_registry
from aiorun.testing.util import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def registries(tmp_path):
    open_reg = start_registry(tmp_path)
    basic_reg = start_registry(tmp_path, users={"alice": "pw"})
    yield open_reg, basic_reg
    open_reg.stop()
    basic_reg.stop()


@pytest.mark.anyio
async def test_open_and_basic_auth(registries):
    open_reg, basic_reg = registries
    async with RegistryClient(open_reg.host) as rc:
        assert rc.base_url.startswith("http://")       # loopback: insecure by default
        await rc.ping()
    async with RegistryClient(basic_reg.host) as rc:
        with pytest.raises(RegistryUnauthorized, match=f"aiorun login {basic_reg.host}"):
            await rc.ping()
    async with RegistryClient(basic_reg.host, credentials=Credentials("alice", "pw")) as rc:
        await rc.ping()
    async with RegistryClient(basic_reg.host, credentials=Credentials("alice", "nope")) as rc:
        with pytest.raises(RegistryUnauthorized) as info:
            await rc.ping()
        assert "nope" not in str(info.value)


@pytest.mark.anyio
async def test_unreachable_registry_names_it():
    host = f"127.0.0.1:{free_port()}"
    async with RegistryClient(host) as rc:
        with pytest.raises(RegistryUnavailable, match=f"cannot reach the registry {host}"):
            with anyio.fail_after(20):
                await rc.ping()
