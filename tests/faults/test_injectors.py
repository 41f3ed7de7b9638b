"""The fault injectors themselves: the proxy's delay, blackhole and reset, the namespace topology's cleanup,
process pauses, and the public surface of etcdsync.testing.faults."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import trio

import etcdsync.testing.faults as faults
from etcdsync.testing.faults import (
    FaultError,
    continue_process,
    leftover_namespaces,
    netns_support,
    open_netns_topology,
    open_tcp_proxy,
    stop_process,
)


def test_all_is_sorted_complete_and_reexported() -> None:
    public = {n for n in dir(faults) if not n.startswith(("_", "@"))} - {"annotations"}  # @: pytest rewriting
    assert faults.__all__ == tuple(sorted(faults.__all__))
    assert public == set(faults.__all__)
    for name in faults.__all__:
        assert getattr(faults, name).__module__ == "etcdsync.testing.faults", name


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
        yield f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        nursery.cancel_scope.cancel()


async def _connect(endpoint: str) -> trio.SocketStream:
    host, port = endpoint.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


@pytest.mark.deadline(20)
async def test_proxy_delays_holds_and_resets(echo: str) -> None:
    async with open_tcp_proxy(echo) as proxy:
        stream = await _connect(proxy.endpoint)
        await stream.send_all(b"a")
        assert await stream.receive_some(10) == b"a"
        proxy.delay = 0.2
        started = trio.current_time()
        await stream.send_all(b"b")
        assert await stream.receive_some(10) == b"b"
        assert trio.current_time() - started >= 0.4  # 0.2 s each way
        proxy.heal()
        proxy.blackhole()
        await stream.send_all(b"held")
        with trio.move_on_after(0.5) as silent:
            await stream.receive_some(10)
        assert silent.cancelled_caught  # nothing gets through ...
        late = await _connect(proxy.endpoint)  # ... and a new connection goes nowhere
        await late.send_all(b"late")
        proxy.heal()
        assert await stream.receive_some(10) == b"held"  # ... but nothing was lost either
        assert await late.receive_some(10) == b"late"
        proxy.reset()
        with pytest.raises(trio.BrokenResourceError, match="reset"):
            await stream.receive_some(10)
        fresh = await _connect(proxy.endpoint)  # new connections are served again
        await fresh.send_all(b"c")
        assert await fresh.receive_some(10) == b"c"
        stats = proxy.statistics()
        assert stats.accepted == 3 and stats.resets == 2 and not stats.blackholed
        for s in (stream, late, fresh):
            await s.aclose()
    with pytest.raises(ValueError, match="delay must be >= 0"):
        proxy.delay = -1


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def _namespace_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


@pytest.mark.deadline(20)
async def test_stop_and_continue_a_process() -> None:
    process = await trio.lowlevel.open_process([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stop_process(process)
        assert _state(process.pid) == "T"
        continue_process(process)
    finally:
        process.kill()
        await process.wait()
    with pytest.raises(FaultError, match="has exited"):
        stop_process(process)


@pytest.mark.deadline(30)
async def test_netns_topology_is_built_partitioned_and_removed() -> None:
    reason = netns_support()
    if reason is not None:
        pytest.skip(f"network namespaces cannot be made here: {reason}")
    async with open_netns_topology(2) as net:
        names = [*net.members, net.client, net.switch]
        assert all(_namespace_exists(n) for n in names)

        def ping(source: str, address: str) -> bool:
            argv = ["ip", "netns", "exec", source, "ping", "-c1", "-W1", address]
            return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0

        if shutil.which("ping") is not None:
            assert await trio.to_thread.run_sync(ping, net.members[0], net.member_ips[1])
            await net.isolate(0)
            assert not await trio.to_thread.run_sync(ping, net.members[0], net.member_ips[1])
            assert await trio.to_thread.run_sync(
                ping, net.client, net.member_ips[0]
            )  # clients still reach it
            await net.heal()
            assert await trio.to_thread.run_sync(ping, net.members[0], net.member_ips[1])
        await net.set_loss(1, 30)
        assert net.faults == {1: "loss 30%"}
        await net.heal(1)
        assert net.faults == {}
    assert not any(_namespace_exists(n) for n in names)
    assert leftover_namespaces() == []
