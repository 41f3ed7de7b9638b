"""Barrier: a key that, while it exists, holds back everyone who waits on it.

One key, exactly the barrier's name (``Barrier(client, "/barriers/freeze")`` uses the key
``/barriers/freeze`` and nothing else; etcd's Go ``recipes.Barrier`` layout):

- :meth:`Barrier.hold` creates it if absent: ``Txn If[Version(key) = 0] Then[Put(key)]``;
- :meth:`Barrier.release` deletes it;
- :meth:`Barrier.wait` reads it and, if present, watches *that exact key* until a DELETE after the
  read. No polling. The watch starts "now" (revision 0), which etcd serves at once, rather than from
  the read's revision + 1, which etcd serves from its 100 ms catch-up loop whenever anything was
  written in between; if it was established after the read, a release in between could be missed,
  so the key is read once more, with the watch kept open (``_keys.KeyWatches``).

Fixed relative to Go's version (``shared/notes/etcd-reference.md`` §2.2): waiting on ``a`` is not held
back by a key ``a0`` (Go's read was a prefix read, PR #16156), and it never waits for a PUT that
already happened (PR #16223). A watch that lost its history re-reads instead of failing. And a barrier can
be attached to a lease (``lease=session.lease_id``): if its holder dies, the barrier opens by itself
once the lease expires (Go's barrier stays closed forever).

What it does not do: it is a shared flag, not a lock. Anyone may release it, whoever held it, and
:meth:`~Barrier.wait` returns once the key was absent at some revision after the call began — it may be
held again by the time the caller runs.
"""

from __future__ import annotations

from typing import final

from ._keys import REREAD, KeyWatches, WaitStatistics, is_delete, recipe_name
from .client import Client, Compare, Event, Op

__all__ = ["Barrier"]


@final
class Barrier:
    """A barrier at the key ``key``: :meth:`hold` closes it, :meth:`release` opens it, :meth:`wait`
    waits until it is open.

    Example::

        freeze = etcdsync.Barrier(client, "/barriers/freeze", lease=session.lease_id)
        await freeze.hold()          # opens by itself if our session dies
        ...
        await freeze.release()

        await etcdsync.Barrier(client, "/barriers/freeze").wait()   # elsewhere: blocks while held

    Args:
        client: the client to use.
        key: the barrier's key (``bytes`` or ``str``), used exactly (not as a prefix).
        lease: attach the key to this lease when :meth:`hold` creates it (0: no lease, the barrier
            stays held until released).
    """

    def __init__(self, client: Client, key: bytes | str, *, lease: int = 0) -> None:
        if not isinstance(client, Client):
            raise TypeError(f"Barrier needs a Client, not {type(client).__name__}")
        if isinstance(lease, bool) or not isinstance(lease, int):
            raise TypeError(f"lease must be an int, not {type(lease).__name__}")
        if lease < 0:
            raise ValueError("lease must be >= 0")
        self._client = client
        self._key = recipe_name(key)
        self._lease = lease

    @property
    def key(self) -> bytes:
        """The barrier's key."""
        return self._key

    @property
    def lease(self) -> int:
        """The lease the key is attached to when :meth:`hold` creates it (0: none)."""
        return self._lease

    def __repr__(self) -> str:
        lease = f", lease {self._lease:x}" if self._lease else ""
        return f"<etcdsync.Barrier at {id(self):#x}, {self._key!r}{lease}>"

    async def hold(self) -> bool:
        """Close the barrier: create its key unless it exists. A checkpoint.

        Returns:
            ``True`` if this call created the key; ``False`` if it was already held (by anyone;
            the existing key, its value and lease are left as they are).

        Raises:
            LeaseNotFoundError: ``lease`` does not exist (any more).
        """
        resp = await self._client.txn(
            compare=[Compare.version(self._key) == 0],
            success=[Op.put(self._key, b"", lease=self._lease)],
        )
        return resp.succeeded

    async def release(self) -> bool:
        """Open the barrier: delete its key, whoever created it. A checkpoint.

        Returns:
            ``True`` if the key existed and was deleted; ``False`` if the barrier was open already.
        """
        resp = await self._client.delete(self._key)
        return resp.deleted > 0

    async def wait(self) -> None:
        """Return once the barrier is open: at once if its key is absent, else when it is deleted.

        A checkpoint, also when the barrier is open already. It does not poll: one read, then one
        watch of the exact key (and one more read if the watch began after the first read).

        Raises:
            TransportError: no endpoint could be reached.
        """
        held_since: int | None = None  # the create revision of the key the first read saw
        async with KeyWatches(self._client, WaitStatistics()) as watches:
            while True:
                resp = await self._client.range(self._key, keys_only=True)
                if not resp.kvs:
                    return
                if held_since is None:
                    held_since = resp.kvs[0].create_revision
                elif resp.kvs[0].create_revision != held_since:
                    return  # released and held again since the first read: that release opened it
                await watches.watch_only([self._key])
                outcome = await watches.wait(resp.header.revision, is_delete)
                if isinstance(outcome, Event):
                    return
                if outcome is not REREAD:
                    assert isinstance(outcome, BaseException)
                    raise outcome
