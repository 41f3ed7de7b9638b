"""Fault injectors for etcd tests, reusable outside etcdsync's own suite (see the fault-injection notes, §2).

Everything here acts on real processes, sockets and namespaces, and always cleans up (also when the test
fails or is cancelled). Nothing here imports :mod:`etcdsync.client`: a fault is injected beside the client
under test, never through it. Member kill (SIGKILL), restart and pause (SIGSTOP) are methods of
:class:`~etcdsync.testing.EtcdCluster`; this package adds the rest:

* **Network, no root.** :class:`TcpProxy` / :func:`open_tcp_proxy`: a loopback TCP proxy with
  ``delay``, :meth:`~TcpProxy.blackhole` / :meth:`~TcpProxy.heal` and :meth:`~TcpProxy.reset` (RST), for a
  client-to-member path. :func:`peer_proxied_cluster`: a cluster whose member-to-member traffic goes through
  such proxies (partition or slow one member's raft traffic).
* **Network, root.** :func:`open_netns_topology` / :func:`netns_cluster`: members in their own network
  namespaces behind a bridge, partitioned with nftables (:meth:`NetnsTopology.isolate`,
  :meth:`~NetnsTopology.set_loss`, :meth:`~NetnsTopology.heal`); :func:`netns_support` says whether this
  machine can, :func:`leftover_namespaces` proves the cleanup.
* **Client processes.** :func:`stop_process` / :func:`continue_process` / :func:`pause_process`:
  stop-the-world pauses (SIGSTOP) longer than a lease TTL.
* **Server state, through etcd's JSON gateway.** :func:`revoke_lease` (kill a session from outside),
  :func:`compact` and :func:`current_revision`, :func:`fill_until_nospace` / :func:`recover_from_nospace`
  / :func:`alarms` / :func:`defragment` (the NOSPACE quota alarm).

Example:
    >>> import trio
    >>> from etcdsync.testing import etcd_cluster
    >>> from etcdsync.testing.faults import open_tcp_proxy, revoke_lease
    >>> async def main() -> None:
    ...     async with etcd_cluster(3) as cluster, open_tcp_proxy(cluster.endpoints[0]) as proxy:
    ...         ...  # a client on proxy.endpoint holds a lock through a session
    ...         proxy.blackhole()  # its keep-alives stop; the lease expires after its TTL
    ...         await cluster.kill(await cluster.leader())  # and the cluster re-elects meanwhile
    ...         proxy.heal()
    >>> trio.run(main)  # doctest: +SKIP
"""

from __future__ import annotations

from ._maintenance import (
    alarms as alarms,
    compact as compact,
    current_revision as current_revision,
    defragment as defragment,
    fill_until_nospace as fill_until_nospace,
    recover_from_nospace as recover_from_nospace,
    revoke_lease as revoke_lease,
)
from ._netns import (
    NetnsCluster as NetnsCluster,
    NetnsTopology as NetnsTopology,
    NetnsUnavailableError as NetnsUnavailableError,
    leftover_namespaces as leftover_namespaces,
    netns_cluster as netns_cluster,
    netns_support as netns_support,
    open_netns_topology as open_netns_topology,
)
from ._pause import (
    continue_process as continue_process,
    pause_process as pause_process,
    stop_process as stop_process,
)
from ._peer import (
    PeerProxiedCluster as PeerProxiedCluster,
    peer_proxied_cluster as peer_proxied_cluster,
)
from ._proxy import (
    ProxyStatistics as ProxyStatistics,
    TcpProxy as TcpProxy,
    open_tcp_proxy as open_tcp_proxy,
)
from ._util import (
    FaultError as FaultError,
)

__all__ = (
    "FaultError",
    "NetnsCluster",
    "NetnsTopology",
    "NetnsUnavailableError",
    "PeerProxiedCluster",
    "ProxyStatistics",
    "TcpProxy",
    "alarms",
    "compact",
    "continue_process",
    "current_revision",
    "defragment",
    "fill_until_nospace",
    "leftover_namespaces",
    "netns_cluster",
    "netns_support",
    "open_netns_topology",
    "open_tcp_proxy",
    "pause_process",
    "peer_proxied_cluster",
    "recover_from_nospace",
    "revoke_lease",
    "stop_process",
)

# Tracebacks and reprs name the public path, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "."):
        _obj.__module__ = __name__
del _name, _obj
