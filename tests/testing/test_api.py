"""The public surface of etcdsync.testing, and the odd corners of the harness that need no long runs."""

from __future__ import annotations

import inspect

import attrs
import pytest
import trio

import etcdsync.testing
from etcdsync.testing import EtcdHarnessError, EtcdOptions, EtcdServer, etcd_cluster, run_server


def test_all_is_sorted_complete_and_reexported() -> None:
    # Submodules (etcdsync.testing.faults) and pytest's assertion-rewriting helpers (@py_builtins) are not
    # re-exported names.
    public = {
        name
        for name in dir(etcdsync.testing)
        if not name.startswith(("_", "@")) and not inspect.ismodule(getattr(etcdsync.testing, name))
    } - {"annotations"}
    assert etcdsync.testing.__all__ == tuple(sorted(etcdsync.testing.__all__))
    assert public == set(etcdsync.testing.__all__)
    for name in etcdsync.testing.__all__:
        assert getattr(etcdsync.testing, name).__module__ == "etcdsync.testing", name


def test_tls_detection_from_extra_args() -> None:
    assert not EtcdOptions().client_tls
    assert EtcdOptions(extra_args=("--cert-file", "s.crt", "--key-file", "s.key")).client_tls
    assert EtcdOptions(extra_args=("--cert-file=s.crt",)).client_tls
    assert EtcdOptions(extra_args=("--auto-tls",)).client_tls
    assert not EtcdOptions(extra_args=("--auto-tls=false",)).client_tls
    assert EtcdOptions(extra_args=("--peer-auto-tls",)).peer_tls
    assert not EtcdOptions(extra_args=("--peer-auto-tls",)).client_tls


@pytest.mark.parametrize("size", [0, 255])
async def test_cluster_size_is_validated(size: int) -> None:
    with pytest.raises(ValueError, match=rf"^size must be between 1 and 254, got {size}$"):
        async with etcd_cluster(size=size):
            pytest.fail("unreachable")


async def test_leader_wait_is_bounded_without_quorum() -> None:
    with trio.fail_after(30):
        async with etcd_cluster(size=1) as cluster:
            assert await cluster.leader() == 0
            await cluster.kill(0)
            cluster.options = attrs.evolve(cluster.options, start_timeout=0.2)
            with pytest.raises(EtcdHarnessError, match=r"^no agreed leader within 0.2 s"):
                await cluster.leader()


async def test_run_server_reports_a_serving_server_and_cleans_up_on_cancel() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server: EtcdServer = await nursery.start(run_server)
            assert (await server.status()).is_leader
            workdir = server.data_dir.parent
            nursery.cancel_scope.cancel()
        assert not server.running
        assert not workdir.exists()
