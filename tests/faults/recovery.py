"""Fault scenarios with a heal, and the liveness measurement around them (shared by the fast tier and soak).

For each scenario: inject the fault, measure how long until a write succeeds through the cluster (the
majority keeps going), heal, then measure how long until a write succeeds *and* every member serves a
linearizable read again.
"""

from __future__ import annotations

import attrs
import trio

import etcdsync
from etcdsync.testing import EtcdCluster
from etcdsync.testing.faults import NetnsCluster, PeerProxiedCluster

from .checkers import Recovery
from .workloads import TIMING, first_success, now

#: Bound on "progress resumed" after a heal: a rejoining member without pre-vote disrupts the cluster with a
#: higher term (2.1 s measured in the notes, §2d), plus a re-election and scheduling slack.
RECOVERY_BOUND = 6.0 * TIMING
#: Bound on the majority's progress while one member is down, paused or cut off: a re-election.
DURING_FAULT_BOUND = 5.0 * TIMING


@attrs.frozen
class Measured:
    fault: str
    during: float | None  # seconds from injection to a successful write (None: none within the bound)
    recovery: Recovery


async def _progress_everywhere(cluster: EtcdCluster, key: bytes) -> float | None:
    """``now()`` once a write succeeded and then every member answered a linearizable read."""
    async with etcdsync.open_client(cluster.endpoints) as client:
        done = await first_success(lambda: client.put(key, b"x"), bound=RECOVERY_BOUND * 2)
        if done is None:
            return None
    latest = done
    for endpoint in cluster.endpoints:
        async with etcdsync.open_client(endpoint, max_rounds=1) as single:
            at = await first_success(lambda c=single: c.get(key), bound=RECOVERY_BOUND * 2)  # type: ignore[misc]
            if at is None:
                return None
            latest = max(latest, at)
    return latest


async def measure(
    cluster: EtcdCluster,
    fault: str,
    *,
    net: PeerProxiedCluster | NetnsCluster | None = None,
    duration: float = 1.5,
) -> Measured:
    """Run one scenario named ``fault`` (see :data:`SCENARIOS`) and measure it."""
    leader = await cluster.leader()
    follower = (leader + 1) % cluster.size
    target = leader if "leader" in fault else follower
    others = [e for i, e in enumerate(cluster.endpoints) if i != target]
    key = b"/faults/recovery/" + fault.encode()
    injected = now()
    if fault.startswith("kill"):
        await cluster.kill(target)
    elif fault.startswith("pause"):
        cluster.pause(target)
    elif fault.startswith("isolate"):
        assert net is not None
        if isinstance(net, PeerProxiedCluster):
            net.isolate(target)
        else:
            await net.isolate(target)
    elif fault.startswith("delay"):
        assert isinstance(net, PeerProxiedCluster)
        for i in range(cluster.size):
            net.delay(i, 0.1)
        others = cluster.endpoints
    else:
        raise AssertionError(fault)
    async with etcdsync.open_client(others) as majority:
        during_at = await first_success(lambda: majority.put(key, b"during"), bound=DURING_FAULT_BOUND * 2)
    await trio.sleep_until(trio.current_time() + max(0.0, injected + duration - now()))
    if fault.startswith("kill"):
        healed = now()
        await cluster.restart(target)
    elif fault.startswith("pause"):
        cluster.resume(target)
        healed = now()
    else:
        assert net is not None
        if isinstance(net, PeerProxiedCluster):
            net.heal()
        else:
            await net.heal()
        healed = now()
    progressed = await _progress_everywhere(cluster, key)
    return Measured(
        fault, None if during_at is None else during_at - injected, Recovery(fault, healed, progressed)
    )


#: Scenarios that need only a loopback cluster with peer proxies.
SCENARIOS = (
    "kill-leader",
    "kill-follower",
    "pause-leader",
    "pause-follower",
    "isolate-leader",
    "isolate-follower",
    "delay-all",
)
