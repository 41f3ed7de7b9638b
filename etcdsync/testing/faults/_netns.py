"""Network partitions with Linux network namespaces, a bridge, and nftables: needs root.

:func:`open_netns_topology` builds the topology of ``shared/notes/fault-injection.md`` §2d and always tears
it down::

    switch namespace  <prefix>-sw   : bridge br0, one veth per member and one for the client side
    member namespaces <prefix>-m<i> : eth0 = 10.77.0.<i+1>/24
    client namespace  <prefix>-cl   : eth0 = 10.77.0.100/24

The root namespace is never touched: nothing is added to it, and every address above exists only inside
namespaces this process created. :func:`netns_cluster` runs an etcd member in each member namespace
(``ip netns exec``) and exposes each member's client port on a loopback address of *this* namespace through a
:class:`~etcdsync.testing.faults.TcpProxy` whose upstream sockets live in the client namespace. So the test
process, the harness's health probes and the client under test all use ordinary ``127.a.b.c:2379``
endpoints, while a partition cuts the real member-to-member path.

Partitions are nftables tables inside one member's namespace (applied in 20-30 ms):

* :meth:`NetnsTopology.isolate` drops traffic between that member and the other members (peer isolation;
  the client side can still reach it, so requests to it see "no leader"), or, with ``clients=True``, also
  the client side (the member goes silent);
* :meth:`NetnsTopology.set_loss` drops a random share of its peer packets (nft ``numgen``);
* :meth:`NetnsTopology.heal` deletes the table.

:func:`netns_support` tells whether this can run here (root, ``ip``, ``nft``), and the error raised when the
kernel refuses is :class:`NetnsUnavailableError`; tests skip on those two, with the reason, and on nothing
else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Sequence
from typing import Final, final

import attrs
import trio

from .._addresses import MemberAddress, pick_block
from .._binary import find_etcd
from .._cluster import EtcdCluster, MemberSpec, launch_cluster
from .._process import EtcdOptions
from ._proxy import TcpProxy
from ._util import FaultError, open_task_nursery, run_command, run_command_sync

__all__ = (
    "NAMESPACE_PREFIX",
    "NetnsCluster",
    "NetnsTopology",
    "NetnsUnavailableError",
    "leftover_namespaces",
    "netns_cluster",
    "netns_support",
    "open_netns_topology",
)

logger = logging.getLogger(__name__)

#: Every namespace made here is called ``etsync-<6 hex>-<role>``.
NAMESPACE_PREFIX: Final = "etsync-"
_TABLE: Final = "etcdsync_faults"
_CLIENT_HOST: Final = 100
#: Bound on tearing a topology down (5 ``ip netns del``, ~30 ms in all).
_TEARDOWN_TIMEOUT: Final = 20.0

#: Namespaces this process created, so leftovers can be found without touching anyone else's.
_CREATED: Final[set[str]] = set()


class NetnsUnavailableError(FaultError):
    """The kernel or the environment refused to create network namespaces or veth pairs."""


def netns_support() -> str | None:
    """``None`` if network-namespace faults can run here, else the reason they cannot.

    Example:
        >>> reason = netns_support()
        >>> if reason is not None:  # doctest: +SKIP
        ...     pytest.skip(reason)
    """
    if os.geteuid() != 0:
        return "network partitions need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run the tests as root"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    if shutil.which("nft") is None:
        return "the 'nft' command is not installed (scripts/bootstrap.sh installs nftables when run as root)"
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces (CONFIG_NET_NS)"
    return None


def leftover_namespaces() -> list[str]:
    """Namespaces this process created that still exist (empty after every topology was closed).

    Example:
        >>> assert leftover_namespaces() == []  # at the end of a test session  # doctest: +SKIP
    """
    return sorted(name for name in _CREATED if os.path.exists(f"/run/netns/{name}"))


@final
@attrs.define(eq=False, repr=False)
class NetnsTopology:
    """The namespaces of one topology, and the partition controls; made by :func:`open_netns_topology`.

    Example:
        >>> async with open_netns_topology(3) as net:  # doctest: +SKIP
        ...     await net.isolate(0)  # member 0 can no longer talk to 1 and 2
        ...     await net.heal(0)

    Attributes:
        token: The random part of every name.
        switch: The switch namespace (bridge ``br0``).
        members: One namespace per member.
        client: The client-side namespace.
        member_ips: ``10.77.0.<i+1>`` for member ``i``.
        client_ip: ``10.77.0.100``.
    """

    token: str
    subnet: str
    switch: str
    members: list[str]
    client: str
    _rules: dict[int, str] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        faulty = ", ".join(f"m{i}: {kind}" for i, kind in sorted(self._rules.items())) or "healed"
        return f"<etcdsync.testing.faults.NetnsTopology {self.token} ({len(self.members)} members; {faulty})>"

    @property
    def member_ips(self) -> list[str]:
        """Each member's address inside the topology."""
        return [f"{self.subnet}.{i + 1}" for i in range(len(self.members))]

    @property
    def client_ip(self) -> str:
        """The client namespace's address."""
        return f"{self.subnet}.{_CLIENT_HOST}"

    @property
    def faults(self) -> dict[int, str]:
        """The member indices with a rule in place, and what it is (``"isolated"``, ``"loss 30%"``, ...)."""
        return dict(self._rules)

    def _others(self, index: int) -> str:
        return ", ".join(ip for i, ip in enumerate(self.member_ips) if i != index)

    async def _apply(self, index: int, kind: str, input_rule: str, output_rule: str) -> None:
        await self.heal(index)
        ruleset = (
            f"table inet {_TABLE} {{\n"
            f"  chain input {{ type filter hook input priority 0; policy accept; {input_rule} }}\n"
            f"  chain output {{ type filter hook output priority 0; policy accept; {output_rule} }}\n"
            "}\n"
        )
        await run_command(
            ["ip", "netns", "exec", self.members[index], "nft", "-f", "-"], stdin=ruleset.encode()
        )
        self._rules[index] = kind
        logger.debug("netns %s: member %d %s", self.token, index, kind)

    async def isolate(self, index: int, *, clients: bool = False) -> None:
        """Cut member ``index`` off from every other member; with ``clients``, from the client side too.

        Raises:
            IndexError: No such member.
            FaultError: nft failed.
        """
        peers = self._others(index)
        if clients:
            peers = f"{peers}, {self.client_ip}"
        await self._apply(
            index,
            "isolated" + (" (clients too)" if clients else ""),
            f"ip saddr {{ {peers} }} drop;",
            f"ip daddr {{ {peers} }} drop;",
        )

    async def set_loss(self, index: int, percent: int) -> None:
        """Drop ``percent`` % of member ``index``'s peer packets, at random, both ways (nft ``numgen``).

        Raises:
            ValueError: ``percent`` is not in 0..100.
            FaultError: nft failed.
        """
        if not 0 <= percent <= 100:
            raise ValueError("percent must be between 0 and 100")
        peers = self._others(index)
        await self._apply(
            index,
            f"loss {percent}%",
            f"ip saddr {{ {peers} }} numgen random mod 100 < {percent} drop;",
            f"ip daddr {{ {peers} }} numgen random mod 100 < {percent} drop;",
        )

    async def heal(self, index: int | None = None) -> None:
        """Remove the rules of member ``index`` (of every member when ``None``); a no-op where there are none.

        Raises:
            FaultError: nft failed.
        """
        for i in [index] if index is not None else sorted(self._rules):
            if self._rules.pop(i, None) is not None:
                await run_command(
                    ["ip", "netns", "exec", self.members[i], "nft", "delete", "table", "inet", _TABLE]
                )
        await trio.lowlevel.checkpoint()


async def _create(name: str) -> None:
    try:
        await run_command(["ip", "netns", "add", name])
    except FaultError as exc:
        raise NetnsUnavailableError(f"cannot create network namespace {name}: {exc}") from exc
    _CREATED.add(name)


async def _build(topology: NetnsTopology) -> None:
    sw = topology.switch
    await _create(sw)
    await run_command(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
    await run_command(["ip", "-n", sw, "link", "set", "br0", "up"])
    hosts = [(ns, i + 1) for i, ns in enumerate(topology.members)] + [(topology.client, _CLIENT_HOST)]
    for ns, host in hosts:
        await _create(ns)
        veth = f"v{topology.token}{host}"
        await run_command(["ip", "-n", ns, "link", "set", "lo", "up"])
        try:
            await run_command(
                ["ip", "link", "add", veth, "netns", sw, "type", "veth", "peer", "name", "eth0", "netns", ns]
            )
        except FaultError as exc:
            raise NetnsUnavailableError(f"cannot create a veth pair: {exc}") from exc
        await run_command(["ip", "-n", sw, "link", "set", veth, "master", "br0"])
        await run_command(["ip", "-n", sw, "link", "set", veth, "up"])
        await run_command(["ip", "-n", ns, "addr", "add", f"{topology.subnet}.{host}/24", "dev", "eth0"])
        await run_command(["ip", "-n", ns, "link", "set", "eth0", "up"])


def _teardown(names: Sequence[str]) -> None:
    """Delete namespaces (their veths go with them); log, never raise, so the real error stays visible."""
    for name in names:
        if os.path.exists(f"/run/netns/{name}"):
            try:
                run_command_sync(["ip", "netns", "del", name])
            except FaultError as exc:
                logger.warning("could not delete network namespace %s: %s", name, exc)


@contextlib.asynccontextmanager
async def open_netns_topology(members: int = 3, *, subnet: str = "10.77.0") -> AsyncIterator[NetnsTopology]:
    """Build a switch, ``members`` member namespaces and a client namespace; delete them all on exit.

    The namespaces are deleted whatever the block did (also when building failed half-way), which removes
    every veth, rule and address with them. Building takes about 0.2 s.

    Example:
        >>> async with open_netns_topology(3) as net:  # doctest: +SKIP
        ...     print(net.members, net.member_ips)

    Raises:
        ValueError: ``members`` not in 1..99.
        NetnsUnavailableError: The kernel or environment refused (see :func:`netns_support` first).
        FaultError: Another command failed.
    """
    if not 1 <= members < _CLIENT_HOST:
        raise ValueError(f"members must be between 1 and {_CLIENT_HOST - 1}")
    reason = netns_support()
    if reason is not None:
        raise NetnsUnavailableError(reason)
    token = secrets.token_hex(3)
    base = f"{NAMESPACE_PREFIX}{token}"
    topology = NetnsTopology(
        token=token,
        subnet=subnet,
        switch=f"{base}-sw",
        members=[f"{base}-m{i}" for i in range(members)],
        client=f"{base}-cl",
    )
    names = [*topology.members, topology.client, topology.switch]
    try:
        await _build(topology)
        yield topology
    finally:
        with trio.move_on_after(_TEARDOWN_TIMEOUT, shield=True):
            await trio.to_thread.run_sync(_teardown, names)


@final
@attrs.define(eq=False, repr=False)
class NetnsCluster:
    """An etcd cluster whose members live in network namespaces; made by :func:`netns_cluster`.

    ``cluster`` is an ordinary :class:`~etcdsync.testing.EtcdCluster` (kill, restart, pause, leader, ...)
    whose endpoints are loopback proxies; ``topology`` has the partition controls.

    Example:
        >>> async with netns_cluster(3) as net:  # doctest: +SKIP
        ...     leader = await net.cluster.leader()
        ...     await net.isolate(leader)  # the majority elects a new leader
        ...     await net.heal()
    """

    cluster: EtcdCluster
    topology: NetnsTopology
    client_proxies: list[TcpProxy]

    def __repr__(self) -> str:
        return f"<etcdsync.testing.faults.NetnsCluster {self.cluster!r} {self.topology!r}>"

    @property
    def endpoints(self) -> list[str]:
        """The members' client endpoints as reachable from here (loopback proxies), in member order."""
        return self.cluster.endpoints

    async def isolate(self, index: int, *, clients: bool = False) -> None:
        """See :meth:`NetnsTopology.isolate`."""
        await self.topology.isolate(index, clients=clients)

    async def set_loss(self, index: int, percent: int) -> None:
        """See :meth:`NetnsTopology.set_loss`."""
        await self.topology.set_loss(index, percent)

    async def heal(self, index: int | None = None) -> None:
        """See :meth:`NetnsTopology.heal`."""
        await self.topology.heal(index)


@contextlib.asynccontextmanager
async def netns_cluster(
    size: int = 3,
    *,
    unsafe_no_fsync: bool = True,
    extra_args: Sequence[str] = (),
    log_level: str = "error",
    heartbeat_interval: int = 50,
    election_timeout: int = 500,
    start_timeout: float = 30.0,
) -> AsyncIterator[NetnsCluster]:
    """Run a ``size``-member etcd cluster with each member in its own network namespace.

    Members listen on ``10.77.0.<i+1>`` inside their namespaces and are reached through loopback proxies
    (:attr:`NetnsCluster.endpoints`). Entering waits until every member is healthy; leaving kills and reaps
    the members, stops the proxies and deletes the namespaces, whatever the block did. Options are those of
    :func:`~etcdsync.testing.etcd_cluster`; TLS flags are not supported here. Pass ``extra_args=
    ["--pre-vote"]`` to compare rejoin behaviour with pre-vote.

    Example:
        >>> async with netns_cluster(3) as net:  # doctest: +SKIP
        ...     async with etcdsync.open_client(net.endpoints) as client:
        ...         await net.isolate(await net.cluster.leader())
        ...         await client.put(b"k", b"v")  # the majority elects a leader and goes on
        ...         await net.heal()

    Raises:
        NetnsUnavailableError: Namespaces cannot be made here (not root, no nft, kernel refused).
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
        raise ValueError("netns_cluster does not support TLS flags")
    binary = find_etcd()
    async with open_netns_topology(size) as topology, open_task_nursery() as nursery:
        loopback = pick_block(size)
        proxies: list[TcpProxy] = []
        for i, ip in enumerate(topology.member_ips):
            proxy = TcpProxy(
                f"{ip}:2379",
                listen_host=loopback[i].host,
                listen_port=loopback[i].client_port,
                upstream_netns=topology.client,
            )
            await nursery.start(proxy.run)
            proxies.append(proxy)
        members = [
            MemberSpec(
                MemberAddress(ip, 2379, 2380, 2381),
                f"http://{ip}:2380",
                command_prefix=("ip", "netns", "exec", namespace),
                access_endpoint=proxy.endpoint,
            )
            for ip, namespace, proxy in zip(topology.member_ips, topology.members, proxies, strict=True)
        ]
        async with launch_cluster(members, options, binary) as cluster:
            yield NetnsCluster(cluster=cluster, topology=topology, client_proxies=proxies)
