"""Real etcd for tests: a single-server launcher, an N-member cluster harness, and a pytest plugin.

Everything here runs the real ``etcd`` binary (``$ETCD_BIN`` or on ``PATH``) on loopback with throwaway data,
and reads its state through etcd's own HTTP gateway, never through :mod:`etcdsync.client`, so the harness
stays trustworthy while the client is broken.

* :func:`etcd_server` / :class:`EtcdServer`: one member, with ``kill``/``restart``/``pause``/``resume``.
* :func:`etcd_cluster` / :class:`EtcdCluster`: N members on ``127.a.b.1…N``, with leader lookup and faults.
* :func:`etcd_process` / :class:`EtcdProcess`: the blocking core, for session-scoped fixtures.
* :func:`run_server`: the engine of ``etcdsync server``.
* The pytest plugin (auto-loaded through the ``pytest11`` entry point) adds the fixtures ``etcd_endpoint``
  (one server per session), ``etcd_prefix`` (a key prefix per test) and ``etcd_cluster`` (a fresh 3-member
  cluster).

Every etcd carries ``$ETCDSYNC_HARNESS_RUN`` (see :func:`harness_marker`) and keeps its data under
``$ETCDSYNC_TMPDIR/etcdsync-*`` (default: the system temp dir), so leftovers can be detected.

Example:
    >>> import trio
    >>> from etcdsync.testing import etcd_cluster
    >>> async def test_failover(etcd_cluster) -> None:  # the fixture, or the context manager directly
    ...     with trio.fail_after(30):
    ...         leader = await etcd_cluster.leader()
    ...         await etcd_cluster.kill(leader)
    ...         assert await etcd_cluster.leader() != leader
"""

from __future__ import annotations

from ._binary import find_etcd as find_etcd
from ._cluster import EtcdCluster as EtcdCluster, etcd_cluster as etcd_cluster
from ._errors import EtcdHarnessError as EtcdHarnessError, EtcdNotFoundError as EtcdNotFoundError
from ._http import GatewayError as GatewayError, MemberStatus as MemberStatus, metric as metric
from ._process import EtcdOptions as EtcdOptions, EtcdProcess as EtcdProcess, harness_marker as harness_marker
from ._server import (
    EtcdServer as EtcdServer,
    etcd_process as etcd_process,
    etcd_server as etcd_server,
    run_server as run_server,
)

__all__ = (
    "EtcdCluster",
    "EtcdHarnessError",
    "EtcdNotFoundError",
    "EtcdOptions",
    "EtcdProcess",
    "EtcdServer",
    "GatewayError",
    "MemberStatus",
    "etcd_cluster",
    "etcd_process",
    "etcd_server",
    "find_etcd",
    "harness_marker",
    "metric",
    "run_server",
)

# Tracebacks and reprs name the public path, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "."):
        _obj.__module__ = __name__
del _name, _obj
