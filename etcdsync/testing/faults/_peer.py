"""A loopback etcd cluster whose raft traffic flows through TCP proxies: partitions and delay without root.

Member *i* listens for peers on ``127.a.b.i:2380`` but advertises a :class:`~etcdsync.testing.faults.TcpProxy`
in front of it (``--initial-advertise-peer-urls`` and ``--initial-cluster`` name the proxy), so every byte
another member sends to it passes the proxy (``shared/notes/fault-injection.md`` §2e):

* :meth:`PeerProxiedCluster.isolate` blackholes member *i*'s proxy. etcd's peer streams are dialled by the
  receiving side, so this silences *i*'s raft messages to the others and their pipeline requests to it: a
  leader loses its followers and is replaced, a follower stops counting. It is an approximation of a real
  partition (:func:`~etcdsync.testing.faults.netns_cluster` is exact but needs root).
* :meth:`PeerProxiedCluster.delay` slows member *i*'s peer traffic (per chunk, order kept).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import final

import attrs

from .._addresses import pick_block
from .._binary import find_etcd
from .._cluster import EtcdCluster, MemberSpec, launch_cluster
from .._process import EtcdOptions, peer_url
from ._proxy import TcpProxy
from ._util import open_task_nursery

__all__ = ("PeerProxiedCluster", "peer_proxied_cluster")


@final
@attrs.define(eq=False, repr=False)
class PeerProxiedCluster:
    """A cluster with a proxy in front of each member's peer listener; made by :func:`peer_proxied_cluster`.

    Example:
        >>> async with peer_proxied_cluster(3) as net:  # doctest: +SKIP
        ...     leader = await net.cluster.leader()
        ...     net.isolate(leader)
        ...     new = await net.cluster.leader()  # elected by the other two
        ...     net.heal()
    """

    cluster: EtcdCluster
    peer_proxies: list[TcpProxy]

    def __repr__(self) -> str:
        return f"<etcdsync.testing.faults.PeerProxiedCluster {self.cluster!r}>"

    @property
    def endpoints(self) -> list[str]:
        """The members' client endpoints (direct, not proxied)."""
        return self.cluster.endpoints

    def isolate(self, index: int) -> None:
        """Blackhole member ``index``'s peer proxy (until :meth:`heal`)."""
        self.peer_proxies[index].blackhole()

    def delay(self, index: int, seconds: float) -> None:
        """Delay member ``index``'s peer traffic by ``seconds`` per chunk."""
        self.peer_proxies[index].delay = seconds

    def heal(self, index: int | None = None) -> None:
        """End the blackhole and delay of member ``index`` (of every member when ``None``)."""
        for i, proxy in enumerate(self.peer_proxies):
            if index is None or i == index:
                proxy.heal()


@contextlib.asynccontextmanager
async def peer_proxied_cluster(
    size: int = 3,
    *,
    unsafe_no_fsync: bool = True,
    extra_args: Sequence[str] = (),
    log_level: str = "error",
    heartbeat_interval: int = 50,
    election_timeout: int = 500,
    start_timeout: float = 30.0,
) -> AsyncIterator[PeerProxiedCluster]:
    """Run a ``size``-member loopback cluster with a proxy on every peer path, for the duration of the block.

    Options are those of :func:`~etcdsync.testing.etcd_cluster` (no TLS). Leaving kills and reaps every
    member and stops the proxies, whatever the block did.

    Example:
        >>> async with peer_proxied_cluster(3) as net:  # doctest: +SKIP
        ...     net.delay(0, 0.05)  # member 0's raft traffic: 50 ms per chunk
        ...     net.isolate(await net.cluster.leader())
        ...     net.heal()

    Raises:
        EtcdHarnessError: The cluster did not become healthy.
    """
    options = EtcdOptions(
        unsafe_no_fsync=unsafe_no_fsync,
        extra_args=tuple(extra_args),
        log_level=log_level,
        heartbeat_interval=heartbeat_interval,
        election_timeout=election_timeout,
        start_timeout=start_timeout,
    )
    if options.client_tls or options.peer_tls:
        raise ValueError("peer_proxied_cluster does not support TLS flags")
    binary = find_etcd()
    addresses = pick_block(size)
    async with open_task_nursery() as nursery:
        proxies: list[TcpProxy] = []
        for address in addresses:
            proxy = TcpProxy(f"{address.host}:{address.peer_port}", listen_host=address.host)
            await nursery.start(proxy.run)
            proxies.append(proxy)
        members = []
        for address, proxy in zip(addresses, proxies, strict=True):
            assert peer_url(address, options).startswith("http://")
            url = f"http://{proxy.endpoint}"
            members.append(MemberSpec(address, url, advertise_peer_url=url))
        async with launch_cluster(members, options, binary) as cluster:
            yield PeerProxiedCluster(cluster=cluster, peer_proxies=proxies)
