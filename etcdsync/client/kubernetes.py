"""The five operations Kubernetes needs from etcd, with the semantics of etcd's Go ``kubernetes.Interface``.

:class:`KubernetesClient` wraps a :class:`~etcdsync.client.Client` and offers ``get``, ``list``,
``count``, ``optimistic_put`` and ``optimistic_delete`` as etcd's ``client/v3/kubernetes`` package
defines them: optimistic concurrency on a key's *mod revision*, lists paginated with a continue key,
every answer carrying the store revision it was read or written at. Its result types are this module's
own :class:`GetResponse`, :class:`ListResponse`, :class:`PutResponse` and :class:`DeleteResponse`, named
as in Go (and distinct from the client's ``PutResponse``/``DeleteResponse``).

Example::

    from etcdsync.client.kubernetes import KubernetesClient

    kube = KubernetesClient(client)
    created = await kube.optimistic_put(b"/registry/pods/default/web", pod, 0)  # create only
    got = await kube.get(b"/registry/pods/default/web")
    updated = await kube.optimistic_put(b"/registry/pods/default/web", pod2, got.kv.mod_revision,
                                        get_on_failure=True)
    if not updated.succeeded:
        ...  # someone else wrote first; updated.kv is what they wrote

Where Go's implementation and its documentation differ, this follows the documentation and says so:
a successful put or delete returns the key-value pair it wrote or deleted in ``kv`` (Go's code leaves
``KV`` nil on success).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import attrs

from ._keys import bytesify, prefix_end
from ._txn import Compare, Op, check_int
from ._types import DeleteResponse as _KVDeleteResponse, KeyValue, RangeResponse

if TYPE_CHECKING:
    from ._client import Client

__all__ = ("DeleteResponse", "GetResponse", "KubernetesClient", "ListResponse", "PutResponse")


@attrs.frozen(kw_only=True)
class GetResponse:
    """The result of :meth:`KubernetesClient.get`.

    Attributes:
        kv: the key-value pair, or ``None`` when the key does not exist (at that revision).
        revision: the revision of the store when the read was served (as in Go, the current revision
            even when an older ``revision`` was asked for).
    """

    kv: KeyValue | None
    revision: int


@attrs.frozen(kw_only=True)
class ListResponse:
    """The result of :meth:`KubernetesClient.list`.

    Attributes:
        kvs: the key-value pairs, ordered by key, at most ``limit`` of them.
        count: the number of keys in the listed range, even if not all were returned because of
            ``limit``. As in Go, the range starts at the continue key when one is given, so on later
            pages this counts the keys from that page on: ``count - len(kvs)`` keys remain.
        revision: the revision of the store when the list was served. As in Go, that is the current
            revision even when an older ``revision`` was asked for, so to read every page at one
            revision, pass the *first* page's ``revision`` to all later pages.
    """

    kvs: tuple[KeyValue, ...]
    count: int
    revision: int


@attrs.frozen(kw_only=True)
class PutResponse:
    """The result of :meth:`KubernetesClient.optimistic_put`.

    Attributes:
        kv: on success, the created or updated key-value pair; on failure with ``get_on_failure``, the
            current pair that made it fail (``None`` if the key does not exist); else ``None``.
        succeeded: whether the put was applied.
        revision: the revision of the store after the operation (the put's own revision on success).
    """

    kv: KeyValue | None
    succeeded: bool
    revision: int


@attrs.frozen(kw_only=True)
class DeleteResponse:
    """The result of :meth:`KubernetesClient.optimistic_delete`.

    Attributes:
        kv: on success, the deleted key-value pair (``None`` if there was none); on failure with
            ``get_on_failure``, the current pair that made it fail; else ``None``.
        succeeded: whether the delete was applied.
        revision: the revision of the store after the operation.
    """

    kv: KeyValue | None
    succeeded: bool
    revision: int


def _single_kv(resp: object) -> KeyValue | None:
    assert isinstance(resp, RangeResponse)
    return resp.kvs[0] if len(resp.kvs) == 1 else None


@final
class KubernetesClient:
    """etcd as Kubernetes uses it: see the module docstring. Wraps a client; owns nothing.

    Every method is one RPC, a checkpoint, and raises what the client raises for it (e.g.
    :class:`~etcdsync.CompactedError` for a compacted revision).

    Example::

        kube = KubernetesClient(client)
        page = await kube.list(b"/registry/pods/", limit=500)
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<etcdsync.client.kubernetes.KubernetesClient at {id(self):#x} over {self._client!r}>"

    @property
    def client(self) -> Client:
        """The client underneath."""
        return self._client

    async def get(self, key: bytes | str, *, revision: int = 0) -> GetResponse:
        """Retrieve a single key-value pair, at ``revision`` when it is not 0.

        Raises:
            CompactedError: ``revision`` has been compacted.
        """
        resp = await self._client.range(key, limit=1, revision=revision)
        return GetResponse(kv=resp.kvs[0] if len(resp.kvs) == 1 else None, revision=resp.header.revision)

    async def list(
        self, prefix: bytes | str, *, revision: int = 0, limit: int = 0, continue_: bytes | str | None = None
    ) -> ListResponse:
        """Retrieve the key-value pairs under ``prefix``, ordered by key.

        At ``revision`` when it is not 0; at most ``limit`` pairs when it is not 0; starting from the
        key ``continue_`` when given. To paginate, set ``continue_`` to the last key of the previous
        page with ``b"\\x00"`` appended, and ``revision`` to the first page's ``revision`` so that
        every page shows the same state of the store.

        Raises:
            ValueError: ``continue_`` does not start with ``prefix``, or ``limit`` is negative.
            CompactedError: ``revision`` has been compacted.

        Example::

            pages, cont, rev = [], None, 0
            while True:
                page = await kube.list(b"/registry/pods/", limit=100, continue_=cont, revision=rev)
                pages.append(page.kvs)
                if page.count <= len(page.kvs):  # count: the keys from this page on
                    break
                cont, rev = page.kvs[-1].key + b"\\x00", rev or page.revision
        """
        p = bytesify(prefix, "prefix")
        start = p
        if continue_ is not None:
            start = bytesify(continue_, "continue_")
            if not start.startswith(p):
                raise ValueError(f"continue_ {start!r} is not under the prefix {p!r}")
        check_int("limit", limit)
        end = prefix_end(p)
        # An empty prefix lists every key; etcd spells "from the first key" as the key b"\x00".
        resp = await self._client.range(start or b"\x00", end, limit=limit, revision=revision)
        return ListResponse(kvs=resp.kvs, count=resp.count, revision=resp.header.revision)

    async def count(self, prefix: bytes | str) -> int:
        """The number of keys under ``prefix`` (every key, for an empty prefix), at the latest revision."""
        resp = await self._client.range(prefix, prefix=True, count_only=True)
        return resp.count

    async def optimistic_put(
        self,
        key: bytes | str,
        value: bytes | str,
        expected_revision: int,
        *,
        lease: int = 0,
        get_on_failure: bool = False,
    ) -> PutResponse:
        """Create or update ``key`` if it has not been modified or created since ``expected_revision``.

        The put applies only while the key's mod revision equals ``expected_revision``; 0 means "the key
        does not exist", so ``expected_revision=0`` creates only. It fails if the key has been modified
        since. With ``get_on_failure``, a failed put returns the current pair in ``kv`` (read in the
        same transaction). ``lease`` attaches the key to a lease.

        Raises:
            ValueError: ``expected_revision`` is negative.
            LeaseNotFoundError: ``lease`` does not exist.
        """
        check_int("expected_revision", expected_revision)
        put = Op.put(key, value, lease=lease)
        failure = [Op.get(put.key)] if get_on_failure else []
        resp = await self._client.txn(
            [Compare.mod_revision(put.key) == expected_revision],
            # The keys-only read after the put returns the new pair's revisions and version without
            # sending the value back; the value is the one we sent.
            [put, Op.get(put.key, keys_only=True)],
            failure,
        )
        kv: KeyValue | None = None
        if resp.succeeded:
            written = _single_kv(resp.responses[1])
            kv = None if written is None else attrs.evolve(written, value=put.value)
        elif get_on_failure:
            kv = _single_kv(resp.responses[0])
        return PutResponse(kv=kv, succeeded=resp.succeeded, revision=resp.header.revision)

    async def optimistic_delete(
        self, key: bytes | str, expected_revision: int, *, get_on_failure: bool = False
    ) -> DeleteResponse:
        """Delete ``key`` if it has not been modified since ``expected_revision``.

        The delete applies only while the key's mod revision equals ``expected_revision``; it fails if
        the key has been modified since. With ``get_on_failure``, a failed delete returns the current
        pair in ``kv``.

        Raises:
            ValueError: ``expected_revision`` is negative.
        """
        check_int("expected_revision", expected_revision)
        delete = Op.delete(key, prev_kv=True)
        failure = [Op.get(delete.key)] if get_on_failure else []
        resp = await self._client.txn(
            [Compare.mod_revision(delete.key) == expected_revision], [delete], failure
        )
        kv: KeyValue | None = None
        if resp.succeeded:
            deleted = resp.responses[0]
            assert isinstance(deleted, _KVDeleteResponse)
            kv = deleted.prev_kvs[0] if deleted.prev_kvs else None
        elif get_on_failure:
            kv = _single_kv(resp.responses[0])
        return DeleteResponse(kv=kv, succeeded=resp.succeeded, revision=resp.header.revision)
