"""Server-side faults through etcd's own JSON gateway: lease revoke, compaction, and the NOSPACE quota alarm.

Everything here talks to a member's gateway (``POST /v3/...`` on its client port), never through
:mod:`etcdsync.client`, so a fault can be injected while the client under test is the thing being watched.
Every call waits as long as the member takes; bound it with ``trio.fail_after``.

* :func:`revoke_lease` is the etcd analogue of Curator's ``KillSession``: the session's keys vanish at once
  and its next keep-alive learns that the lease is gone.
* :func:`compact` discards history (a watcher that resumes below it gets "compacted"; a waiter watching
  from an old revision must re-query).
* :func:`fill_until_nospace` writes big values until the backend quota alarm (NOSPACE) fires;
  :func:`recover_from_nospace` deletes them, compacts, defragments every member and disarms the alarm.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Final

import trio

from .. import _http
from ._util import FaultError

__all__ = (
    "alarms",
    "compact",
    "current_revision",
    "defragment",
    "fill_until_nospace",
    "recover_from_nospace",
    "revoke_lease",
)

_NOSPACE_MESSAGE: Final = "database space exceeded"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _prefix_end(prefix: bytes) -> bytes:
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return b"\x00"
    end[-1] += 1
    return bytes(end)


async def _post(endpoint: str, path: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    """POST to the gateway; return the HTTP status and the decoded JSON object (errors included)."""
    response = await _http.request("POST", path, endpoint, json.dumps(body).encode())
    try:
        decoded: object = json.loads(response.body) if response.body else {}
    except ValueError as exc:
        raise FaultError(f"{path} on {endpoint}: reply is not JSON: {response.body[:200]!r}") from exc
    if not isinstance(decoded, dict):
        raise FaultError(f"{path} on {endpoint}: reply is not a JSON object: {response.body[:200]!r}")
    return response.status, decoded


async def _call(endpoint: str, path: str, body: dict[str, object]) -> dict[str, object]:
    status, decoded = await _post(endpoint, path, body)
    if status != 200:
        raise FaultError(f"{path} on {endpoint}: HTTP {status}: {decoded.get('error') or decoded}")
    return decoded


def _int(value: object) -> int:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return int(value)
    return 0


def _header_revision(reply: dict[str, object]) -> int:
    header = reply.get("header")
    return _int(header.get("revision")) if isinstance(header, dict) else 0


async def current_revision(endpoint: str) -> int:
    """The store's current revision, read through ``endpoint`` (a linearizable read).

    Example:
        >>> rev = await current_revision(server.endpoint)  # doctest: +SKIP
    """
    reply = await _call(endpoint, "/v3/kv/range", {"key": _b64(b"\x00"), "count_only": True})
    return _header_revision(reply)


async def revoke_lease(endpoint: str, lease_id: int) -> bool:
    """Revoke ``lease_id`` from outside its owner; return False if it did not exist (any more).

    Every key attached to it is deleted in the same revision, so a Mutex, Election or Semaphore held through
    that session is lost at once.

    Example:
        >>> await revoke_lease(cluster.endpoints[0], session.lease_id)  # doctest: +SKIP
        True

    Raises:
        FaultError: The gateway refused for another reason.
    """
    status, decoded = await _post(endpoint, "/v3/lease/revoke", {"ID": str(lease_id)})
    if status == 200:
        return True
    if "lease not found" in str(decoded.get("error", "")):
        return False
    raise FaultError(f"revoking lease {lease_id:x} on {endpoint}: HTTP {status}: {decoded}")


async def compact(endpoint: str, revision: int | None = None, *, physical: bool = True) -> int:
    """Compact the store at ``revision`` (default: the current one); return the revision compacted at.

    With ``physical`` the call returns once the space is reclaimed, so a watch or read below it fails right
    after. Compacting at or below an earlier compaction is not an error here (it returns that revision).

    Example:
        >>> rev = await compact(server.endpoint)  # history before `rev` is gone  # doctest: +SKIP

    Raises:
        FaultError: The gateway refused (e.g. a future revision).
    """
    at = await current_revision(endpoint) if revision is None else revision
    status, decoded = await _post(endpoint, "/v3/kv/compaction", {"revision": str(at), "physical": physical})
    if status != 200 and "has been compacted" not in str(decoded.get("error", "")):
        raise FaultError(f"compacting at {at} on {endpoint}: HTTP {status}: {decoded}")
    return at


async def alarms(endpoint: str) -> list[tuple[int, str]]:
    """The cluster's active alarms as ``(member_id, alarm)`` pairs.

    Example:
        >>> await alarms(server.endpoint)  # doctest: +SKIP
        [(10276657743932975437, 'NOSPACE')]
    """
    reply = await _call(endpoint, "/v3/maintenance/alarm", {"action": "GET"})
    found = reply.get("alarms") or []
    result: list[tuple[int, str]] = []
    if isinstance(found, list):
        for alarm in found:
            if isinstance(alarm, dict):
                result.append((_int(alarm.get("memberID")), str(alarm.get("alarm", "NONE"))))
    return result


async def defragment(endpoint: str) -> None:
    """Defragment one member's backend (frees the space compaction released). Blocks that member briefly.

    Example:
        >>> for endpoint in cluster.endpoints:  # doctest: +SKIP
        ...     await defragment(endpoint)
    """
    await _call(endpoint, "/v3/maintenance/defragment", {})


async def fill_until_nospace(
    endpoint: str,
    *,
    key_prefix: bytes = b"/etcdsync-faults/nospace/",
    value_bytes: int = 512 * 1024,
    max_puts: int = 400,
) -> int:
    """Put ``value_bytes`` values under ``key_prefix`` until the quota alarm fires; return how many worked.

    Meant for a server started with a small ``quota_backend_bytes`` (4 MiB fills in about ten puts). Bounded
    by ``max_puts``. Afterwards every write to the cluster fails with "database space exceeded" until
    :func:`recover_from_nospace`.

    Example:
        >>> async with etcd_server(quota_backend_bytes=4 * 1024 * 1024) as server:  # doctest: +SKIP
        ...     await fill_until_nospace(server.endpoint)
        ...     ...  # writes fail with NoSpaceError; reads and keep-alives still work
        ...     await recover_from_nospace([server.endpoint])

    Raises:
        FaultError: ``max_puts`` puts did not fill the quota, or a put failed otherwise.
    """
    value = _b64(b"x" * value_bytes)
    for index in range(max_puts):
        status, decoded = await _post(
            endpoint, "/v3/kv/put", {"key": _b64(key_prefix + b"%06d" % index), "value": value}
        )
        if status == 200:
            continue
        if _NOSPACE_MESSAGE in str(decoded.get("error", "")):
            return index
        raise FaultError(f"filling {endpoint}: put {index} failed: HTTP {status}: {decoded}")
    raise FaultError(f"{max_puts} puts of {value_bytes} bytes did not fill the quota of {endpoint}")


async def recover_from_nospace(
    endpoints: Sequence[str], *, key_prefix: bytes = b"/etcdsync-faults/nospace/"
) -> None:
    """Undo :func:`fill_until_nospace`: delete the filler, compact, defragment each member, disarm NOSPACE.

    This is the recovery procedure of etcd's maintenance guide. ``endpoints`` must list every member (each is
    defragmented). Writes work again once it returns.

    Raises:
        FaultError: A step failed.
    """
    first = endpoints[0]
    await _call(
        first, "/v3/kv/deleterange", {"key": _b64(key_prefix), "range_end": _b64(_prefix_end(key_prefix))}
    )
    await compact(first)
    for endpoint in endpoints:
        await defragment(endpoint)
    for member_id, alarm in await alarms(first):
        await _call(
            first,
            "/v3/maintenance/alarm",
            {"action": "DEACTIVATE", "memberID": str(member_id), "alarm": alarm},
        )
    await trio.lowlevel.checkpoint()
