"""etcdsync.client.kubernetes against a real etcd: one row per sentence of etcd's Go ``kubernetes.Interface``
documentation (client/v3/kubernetes/interface.go), each checked by its effect on the server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from etcdsync import CompactedError
from etcdsync.client import Client
from etcdsync.client.kubernetes import (
    DeleteResponse,
    GetResponse,
    KubernetesClient,
    ListResponse,
    PutResponse,
)

Check = Callable[[KubernetesClient, Client, bytes], Awaitable[None]]
ROWS: dict[str, Check] = {}


def row(sentence: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        ROWS[sentence] = check
        return check

    return register


# --- Get ------------------------------------------------------------------------------------------------


@row("Get retrieves a single key-value pair from etcd.")
async def _get(kube: KubernetesClient, client: Client, p: bytes) -> None:
    put = await client.put(p + b"a", b"1")
    await client.put(p + b"a/child", b"not this one")
    got = await kube.get(p + b"a")
    assert isinstance(got, GetResponse)
    assert got.kv is not None and (got.kv.key, got.kv.value) == (p + b"a", b"1")
    assert got.revision >= put.header.revision  # the store's revision when read
    missing = await kube.get(p + b"nope")
    assert missing.kv is None and missing.revision >= got.revision


@row(
    "If opts.Revision is set to a non-zero value, the key-value pair is retrieved at the specified revision."
)
async def _get_at_revision(kube: KubernetesClient, client: Client, p: bytes) -> None:
    first = await client.put(p + b"a", b"1")
    await client.put(p + b"a", b"2")
    old = await kube.get(p + b"a", revision=first.header.revision)
    assert old.kv is not None and old.kv.value == b"1"
    before = await kube.get(p + b"a", revision=first.header.revision - 1)
    assert before.kv is None


@row("If the required revision has been compacted, the request will fail with ErrCompacted.")
async def _get_compacted(kube: KubernetesClient, client: Client, p: bytes) -> None:
    first = await client.put(p + b"a", b"1")
    second = await client.put(p + b"a", b"2")
    await client.compact(second.header.revision)
    with pytest.raises(CompactedError):
        await kube.get(p + b"a", revision=first.header.revision)
    with pytest.raises(CompactedError):
        await kube.list(p, revision=first.header.revision)


# --- List -----------------------------------------------------------------------------------------------


@row("List retrieves key-value pairs with the specified prefix, ordered lexicographically by key.")
async def _list(kube: KubernetesClient, client: Client, p: bytes) -> None:
    for name in (b"b", b"a", b"c/x", b"c"):
        await client.put(p + b"dir/" + name, name)
    last = await client.put(p + b"dirt", b"outside the prefix")
    listed = await kube.list(p + b"dir/")
    assert isinstance(listed, ListResponse)
    assert [kv.key for kv in listed.kvs] == [p + b"dir/" + n for n in (b"a", b"b", b"c", b"c/x")]
    assert [kv.value for kv in listed.kvs] == [b"a", b"b", b"c", b"c/x"]
    assert listed.count == 4
    assert listed.revision >= last.header.revision  # the store's revision when read


@row("If opts.Revision is non-zero, the key-value pairs are retrieved at the specified revision.")
async def _list_at_revision(kube: KubernetesClient, client: Client, p: bytes) -> None:
    at = (await client.put(p + b"d/1", b"x")).header.revision
    await client.put(p + b"d/2", b"x")
    await client.delete(p + b"d/1")
    then = await kube.list(p + b"d/", revision=at)
    assert [kv.key for kv in then.kvs] == [p + b"d/1"]
    assert then.count == 1
    now = await kube.list(p + b"d/")
    assert [kv.key for kv in now.kvs] == [p + b"d/2"]


@row("If opts.Limit is greater than zero, the number of returned key-value pairs is bounded by the limit.")
async def _list_limit(kube: KubernetesClient, client: Client, p: bytes) -> None:
    for i in range(5):
        await client.put(p + b"d/%d" % i, b"x")
    page = await kube.list(p + b"d/", limit=2)
    assert [kv.key for kv in page.kvs] == [p + b"d/0", p + b"d/1"]
    # Count is the total number of keys with the specified prefix, even if not all were returned.
    assert page.count == 5
    assert len((await kube.list(p + b"d/", limit=0)).kvs) == 5
    with pytest.raises(ValueError, match=r"^limit must be >= 0$"):
        await kube.list(p + b"d/", limit=-1)


@row(
    "If opts.Continue is not empty, the listing will start from the key specified by it. When paginating, "
    'the Continue value should be set to the last observed key with "\\x00" appended to it.'
)
async def _list_continue(kube: KubernetesClient, client: Client, p: bytes) -> None:
    for i in range(7):
        await client.put(p + b"d/%d" % i, b"v%d" % i)
    keys: list[bytes] = []
    counts: list[int] = []
    cont: bytes | None = None
    rev = 0
    while True:
        page = await kube.list(p + b"d/", limit=3, continue_=cont, revision=rev)
        keys += [kv.key for kv in page.kvs]
        counts.append(page.count)
        if page.count <= len(page.kvs):
            break
        # As Go's ListIter does: continue after the last key, at the first page's revision.
        cont, rev = page.kvs[-1].key + b"\x00", rev or page.revision
        # Writes between pages do not show up: every page is read at the first page's revision.
        await client.put(p + b"d/5a", b"late")
        await client.delete(p + b"d/6")
    assert keys == [p + b"d/%d" % i for i in range(7)]
    # As Go computes it: the count of the range read, which starts at the continue key.
    assert counts == [7, 4, 1]
    # A page read at an older revision still reports the store's current revision.
    assert page.revision > rev
    with pytest.raises(ValueError, match=r"^continue_ .* is not under the prefix"):
        await kube.list(p + b"d/", continue_=p + b"e")


# --- Count ----------------------------------------------------------------------------------------------


@row("Count returns the number of keys with the specified prefix.")
async def _count(kube: KubernetesClient, client: Client, p: bytes) -> None:
    assert await kube.count(p + b"d/") == 0
    for i in range(4):
        await client.put(p + b"d/%d" % i, b"x")
    await client.put(p + b"dx", b"outside")
    assert await kube.count(p + b"d/") == 4
    assert await kube.count(p) == 5


# --- OptimisticPut --------------------------------------------------------------------------------------


@row(
    "OptimisticPut creates or updates a key-value pair if the key has not been modified or created since "
    "the revision specified in expectedRevision."
)
async def _optimistic_put(kube: KubernetesClient, client: Client, p: bytes) -> None:
    created = await kube.optimistic_put(p + b"k", b"v1", 0)  # 0: the key does not exist
    assert isinstance(created, PutResponse)
    assert created.succeeded
    assert created.kv is not None
    assert (created.kv.key, created.kv.value, created.kv.version) == (p + b"k", b"v1", 1)
    assert created.kv.create_revision == created.kv.mod_revision == created.revision
    # Revision is the revision of the key-value store after the Put operation.
    stored = await client.get(p + b"k")
    assert stored == created.kv
    updated = await kube.optimistic_put(p + b"k", b"v2", created.kv.mod_revision)
    assert updated.succeeded and updated.kv is not None
    assert (updated.kv.value, updated.kv.version) == (b"v2", 2)
    assert updated.kv.create_revision == created.revision
    assert updated.kv == await client.get(p + b"k")


@row("An OptimisticPut fails if the key has been modified since expectedRevision.")
async def _optimistic_put_conflict(kube: KubernetesClient, client: Client, p: bytes) -> None:
    first = await kube.optimistic_put(p + b"k", b"mine", 0)
    assert first.kv is not None
    await client.put(p + b"k", b"theirs")
    stale = await kube.optimistic_put(p + b"k", b"mine again", first.kv.mod_revision)
    assert not stale.succeeded and stale.kv is None
    assert stale.revision > first.revision
    again = await kube.optimistic_put(p + b"k", b"create?", 0)  # it exists: not created
    assert not again.succeeded
    kv = await client.get(p + b"k")
    assert kv is not None and kv.value == b"theirs"


@row(
    "GetOnFailure specifies whether to return the modified key-value pair if the Put operation fails due "
    "to a revision mismatch."
)
async def _optimistic_put_get_on_failure(kube: KubernetesClient, client: Client, p: bytes) -> None:
    theirs = await client.put(p + b"k", b"theirs")
    failed = await kube.optimistic_put(p + b"k", b"mine", 0, get_on_failure=True)
    assert not failed.succeeded
    assert failed.kv is not None
    assert (failed.kv.value, failed.kv.mod_revision) == (b"theirs", theirs.header.revision)
    # Expecting a key that has been deleted since: the failure returns no pair.
    await client.delete(p + b"k")
    gone = await kube.optimistic_put(p + b"k", b"mine", theirs.header.revision, get_on_failure=True)
    assert not gone.succeeded and gone.kv is None


@row("LeaseID is the ID of a lease to associate with the key.")
async def _optimistic_put_lease(kube: KubernetesClient, client: Client, p: bytes) -> None:
    lease = await client.lease_grant(30)
    put = await kube.optimistic_put(p + b"k", b"v", 0, lease=lease.id)
    assert put.kv is not None and put.kv.lease == lease.id
    await client.lease_revoke(lease.id)
    assert (await kube.get(p + b"k")).kv is None


# --- OptimisticDelete -----------------------------------------------------------------------------------


@row(
    "OptimisticDelete deletes the key-value pair if it hasn't been modified since the revision specified "
    "in expectedRevision."
)
async def _optimistic_delete(kube: KubernetesClient, client: Client, p: bytes) -> None:
    put = await client.put(p + b"k", b"v")
    deleted = await kube.optimistic_delete(p + b"k", put.header.revision)
    assert isinstance(deleted, DeleteResponse)
    assert deleted.succeeded
    # KV is the deleted key-value pair; Revision the store's revision after the delete.
    assert deleted.kv is not None and (deleted.kv.key, deleted.kv.value) == (p + b"k", b"v")
    assert deleted.revision == put.header.revision + 1
    assert (await kube.get(p + b"k")).kv is None


@row("An OptimisticDelete fails if the key has been modified since expectedRevision.")
async def _optimistic_delete_conflict(kube: KubernetesClient, client: Client, p: bytes) -> None:
    put = await client.put(p + b"k", b"v1")
    await client.put(p + b"k", b"v2")
    stale = await kube.optimistic_delete(p + b"k", put.header.revision)
    assert not stale.succeeded and stale.kv is None
    assert (await kube.get(p + b"k")).kv is not None


@row(
    "GetOnFailure specifies whether to return the modified key-value pair if the Delete operation fails "
    "due to a revision mismatch."
)
async def _optimistic_delete_get_on_failure(kube: KubernetesClient, client: Client, p: bytes) -> None:
    put = await client.put(p + b"k", b"v1")
    theirs = await client.put(p + b"k", b"v2")
    failed = await kube.optimistic_delete(p + b"k", put.header.revision, get_on_failure=True)
    assert not failed.succeeded
    assert failed.kv is not None
    assert (failed.kv.value, failed.kv.mod_revision) == (b"v2", theirs.header.revision)


@pytest.mark.parametrize("sentence", list(ROWS))
async def test_go_doc_sentence(sentence: str, client: Client, etcd_prefix: bytes) -> None:
    await ROWS[sentence](KubernetesClient(client), client, etcd_prefix)


def test_result_types_are_the_modules_own() -> None:
    import etcdsync.client

    assert DeleteResponse is not etcdsync.client.DeleteResponse
    assert PutResponse is not etcdsync.client.PutResponse
    assert etcdsync.client.kubernetes.__all__ == tuple(sorted(etcdsync.client.kubernetes.__all__))
    assert PutResponse.__module__ == "etcdsync.client.kubernetes"


async def test_bad_arguments_fail_before_sending(client: Client) -> None:
    kube = KubernetesClient(client)
    with pytest.raises(ValueError, match=r"^expected_revision must be >= 0$"):
        await kube.optimistic_put(b"/k", b"v", -1)
    with pytest.raises(ValueError, match=r"^expected_revision must be >= 0$"):
        await kube.optimistic_delete(b"/k", -1)
    with pytest.raises(TypeError):
        await kube.get(5)  # type: ignore[arg-type]
    assert "KubernetesClient" in repr(kube) and kube.client is client
