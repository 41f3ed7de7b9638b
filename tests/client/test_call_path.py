"""The client's call path against scripted channels: failover rules, re-authentication, the call
metadata and the transaction cache.

The channels are stand-ins for the transport (``open_client`` is given them instead of real ones):
each answers the scripted outcomes in order, then a default answer, and records what it was sent. The
rules tested here are the module docstring's of ``etcdsync/client/_client.py``; the same rules are
tested against real clusters in ``test_failover.py`` and ``tests/faults``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

import etcdsync
from etcdsync import Compare, Op
from etcdsync.client import _client
from etcdsync.client._pb import kv_pb2, rpc_pb2
from etcdsync.client._transport import ChannelState, ChannelStatistics, ConnectionLost, StatusError

KV_PUT = "/etcdserverpb.KV/Put"
KV_RANGE = "/etcdserverpb.KV/Range"
KV_TXN = "/etcdserverpb.KV/Txn"
AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"
HEADER = rpc_pb2.ResponseHeader(cluster_id=1, member_id=2, revision=7, raft_term=3)
ANSWERS = {
    KV_PUT: rpc_pb2.PutResponse(header=HEADER).SerializeToString(),
    KV_RANGE: rpc_pb2.RangeResponse(
        header=HEADER, kvs=[kv_pb2.KeyValue(key=b"k", value=b"v", mod_revision=7)], count=1
    ).SerializeToString(),
    KV_TXN: rpc_pb2.TxnResponse(header=HEADER, succeeded=True).SerializeToString(),
}

Outcome = bytes | BaseException


class ScriptedChannel:
    """A channel that answers ``script`` in order, then the method's default answer."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.script: list[Outcome] = []
        self.sent: list[tuple[str, bytes, tuple[tuple[str, str], ...]]] = []

    async def unary(self, path: str, request: bytes, *, metadata: Sequence[tuple[str, str]] = ()) -> bytes:
        await trio.lowlevel.checkpoint()
        self.sent.append((path, request, tuple(metadata)))
        outcome = self.script.pop(0) if self.script else ANSWERS[path]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.sent]

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            endpoint=self.endpoint,
            state=ChannelState.READY,
            open_streams=0,
            calls_started=len(self.sent),
            calls_failed=0,
            reconnects=0,
            last_error=None,
        )


def lost(endpoint: str, *, sent: bool) -> ConnectionLost:
    return ConnectionLost(f"connection to {endpoint} broke", endpoint=endpoint, request_sent=sent)


def unavailable(
    message: str = "etcdserver: request timed out, possibly due to connection lost",
) -> StatusError:
    return StatusError(14, message)


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch) -> dict[str, ScriptedChannel]:
    """Scripted channels for endpoints a:1, b:1 and c:1; every open_client in the test gets them."""
    made = {address: ScriptedChannel(address) for address in ("a:1", "b:1", "c:1")}

    @asynccontextmanager
    async def open_channel(address: str, *, ssl_context: object = None) -> AsyncIterator[ScriptedChannel]:
        yield made[address]

    def opener(transport: str) -> Callable[..., object]:
        return open_channel

    monkeypatch.setattr(_client, "channel_opener", opener)
    return made


# -- failover --------------------------------------------------------------------------------------------


async def test_calls_stay_on_the_preferred_endpoint(channels: dict[str, ScriptedChannel]) -> None:
    async with etcdsync.open_client(["a:1", "b:1"]) as client:
        for _ in range(3):
            await client.put(b"k", b"v")
        assert (await client.get(b"k")) is not None
        assert channels["a:1"].paths() == [KV_PUT, KV_PUT, KV_PUT, KV_RANGE]
        assert channels["b:1"].sent == []
        assert client.statistics().calls_failed_over == 0


async def test_a_write_that_never_left_is_sent_to_the_next_endpoint(
    channels: dict[str, ScriptedChannel],
) -> None:
    async with etcdsync.open_client(["a:1", "b:1"]) as client:
        await client.put(b"k", b"1")  # a's channel is open: the next call takes the fast path
        channels["a:1"].script.append(lost("a:1", sent=False))
        await client.put(b"k", b"2")
        assert channels["a:1"].paths() == [KV_PUT, KV_PUT]
        assert channels["b:1"].paths() == [KV_PUT]
        assert channels["a:1"].sent[1][1] == channels["b:1"].sent[0][1]
        stats = client.statistics()
        assert stats.current_endpoint == "b:1"
        assert stats.calls_failed_over == 1
        await client.put(b"k", b"3")  # b is preferred from now on
        assert channels["b:1"].paths() == [KV_PUT, KV_PUT]


async def test_a_write_that_may_have_arrived_is_not_sent_again(channels: dict[str, ScriptedChannel]) -> None:
    async with etcdsync.open_client(["a:1", "b:1"]) as client:
        await client.put(b"k", b"1")
        cause = lost("a:1", sent=True)
        channels["a:1"].script.append(cause)
        with pytest.raises(etcdsync.OutcomeUnknownError, match="may or may not have been applied") as info:
            await client.put(b"k", b"2")
        assert info.value.__cause__ is cause
        assert channels["b:1"].sent == []
        # The endpoint is still marked as failed: the next call goes elsewhere.
        assert client.statistics().current_endpoint == "b:1"


@pytest.mark.parametrize("first_call_opens_the_channel", [False, True])
async def test_a_read_fails_over_on_unavailable(
    channels: dict[str, ScriptedChannel], first_call_opens_the_channel: bool
) -> None:
    async with etcdsync.open_client(["a:1", "b:1", "c:1"]) as client:
        if not first_call_opens_the_channel:
            await client.put(b"k", b"v")
        channels["a:1"].script.append(unavailable())
        channels["b:1"].script.append(lost("b:1", sent=True))  # a read is retried even so
        kv = await client.get(b"k")
        assert kv is not None and kv.value == b"v"
        assert channels["a:1"].paths()[-1] == KV_RANGE
        assert channels["b:1"].paths() == [KV_RANGE]
        assert channels["c:1"].paths() == [KV_RANGE]
        assert client.statistics().current_endpoint == "c:1"


async def test_a_write_fails_over_only_on_no_leader(channels: dict[str, ScriptedChannel]) -> None:
    async with etcdsync.open_client(["a:1", "b:1"]) as client:
        await client.put(b"k", b"v")
        channels["a:1"].script.append(unavailable("etcdserver: no leader"))
        await client.txn(success=[Op.put(b"k", b"w")])  # hasleader: not applied, so sent again
        assert channels["b:1"].paths() == [KV_TXN]
        channels["b:1"].script.append(unavailable())
        with pytest.raises(etcdsync.OutcomeUnknownError) as info:
            await client.put(b"k", b"x")
        assert isinstance(info.value.__cause__, etcdsync.UnavailableError)
        assert len(channels["a:1"].sent) == 2  # not sent to a again


async def test_an_error_that_is_not_a_failover_is_raised_as_is(channels: dict[str, ScriptedChannel]) -> None:
    async with etcdsync.open_client(["a:1", "b:1"]) as client:
        await client.put(b"k", b"v")
        status = StatusError(3, "etcdserver: requested lease not found")
        channels["a:1"].script.append(status)
        with pytest.raises(etcdsync.LeaseNotFoundError) as info:
            await client.put(b"k", b"v", lease=5)
        assert info.value.__cause__ is status
        assert channels["b:1"].sent == []
        assert client.statistics().current_endpoint == "a:1"


async def test_every_endpoint_is_tried_once_per_round(
    channels: dict[str, ScriptedChannel], autojump_clock: trio.abc.Clock
) -> None:
    async with etcdsync.open_client(["a:1", "b:1"], max_rounds=3) as client:
        await client.put(b"k", b"v")
        for channel in channels.values():
            channel.script.extend(lost(channel.endpoint, sent=False) for _ in range(3))
        with pytest.raises(etcdsync.NoEndpointAvailableError) as info:
            await client.get(b"k")
        assert channels["a:1"].paths() == [KV_PUT, KV_RANGE, KV_RANGE, KV_RANGE]
        assert channels["b:1"].paths() == [KV_RANGE, KV_RANGE, KV_RANGE]
        assert set(info.value.errors) == {"a:1", "b:1"}


# -- metadata and re-authentication ----------------------------------------------------------------------


def token_answer(token: str) -> bytes:
    return rpc_pb2.AuthenticateResponse(header=HEADER, token=token).SerializeToString()


async def test_metadata_carries_the_current_token(channels: dict[str, ScriptedChannel]) -> None:
    channel = channels["a:1"]
    channel.script.append(token_answer("t1"))
    async with etcdsync.open_client("a:1", username="u", password="p") as client:
        await client.put(b"k", b"1")
        await client.put(b"k", b"2")
        # The stale token is refused: a new one is fetched and the call sent once more with it.
        channel.script += [StatusError(16, "etcdserver: invalid auth token"), token_answer("t2")]
        await client.put(b"k", b"3")
        await client.with_namespace(b"/ns/").put(b"k", b"4")  # views share the token
        hasleader = ("hasleader", "true")
        assert [(path, metadata) for path, _, metadata in channel.sent] == [
            (AUTHENTICATE, (hasleader,)),
            (KV_PUT, (hasleader, ("token", "t1"))),
            (KV_PUT, (hasleader, ("token", "t1"))),
            (KV_PUT, (hasleader, ("token", "t1"))),
            (AUTHENTICATE, (hasleader,)),
            (KV_PUT, (hasleader, ("token", "t2"))),
            (KV_PUT, (hasleader, ("token", "t2"))),
        ]


async def test_metadata_is_built_once_per_token(channels: dict[str, ScriptedChannel]) -> None:
    async with etcdsync.open_client("a:1") as client:
        first = client._metadata()
        assert first == (("hasleader", "true"),)
        assert client._metadata() is first
        client._token = "t"
        with_token = client._metadata()
        assert with_token == (("hasleader", "true"), ("token", "t"))
        assert client._metadata() is with_token
        assert client.with_namespace(b"/ns/")._metadata() is with_token
        client._token = None
        assert client._metadata() == first


async def test_a_token_refused_twice_is_an_error(channels: dict[str, ScriptedChannel]) -> None:
    channel = channels["a:1"]
    channel.script.append(token_answer("t1"))
    async with etcdsync.open_client("a:1", username="u", password="p") as client:
        await client.put(b"k", b"1")
        refused = StatusError(16, "etcdserver: invalid auth token")
        channel.script += [refused, token_answer("t2"), StatusError(16, "etcdserver: invalid auth token")]
        with pytest.raises(etcdsync.UnauthenticatedError, match="invalid auth token"):
            await client.put(b"k", b"2")
        assert [path for path, _, _ in channel.sent][-3:] == [KV_PUT, AUTHENTICATE, KV_PUT]


async def test_a_call_sent_again_after_re_authentication_can_still_fail_over(
    channels: dict[str, ScriptedChannel],
) -> None:
    channel = channels["a:1"]
    channel.script.append(token_answer("t1"))
    async with etcdsync.open_client(["a:1", "b:1"], username="u", password="p") as client:
        await client.put(b"k", b"1")
        refused = StatusError(16, "etcdserver: invalid auth token")
        channel.script += [refused, token_answer("t2"), lost("a:1", sent=False)]
        await client.put(b"k", b"2")
        assert channel.paths()[-3:] == [KV_PUT, AUTHENTICATE, KV_PUT]
        assert channels["b:1"].sent == [
            (KV_PUT, channel.sent[-1][1], (("hasleader", "true"), ("token", "t2")))
        ]
        assert client.statistics().current_endpoint == "b:1"


# -- the transaction cache -------------------------------------------------------------------------------


def keys_of(request: bytes) -> list[bytes]:
    txn = rpc_pb2.TxnRequest.FromString(request)
    return [c.key for c in txn.compare] + [op.request_put.key for op in txn.success]


async def test_a_transaction_sent_again_as_the_same_tuples_is_not_rebuilt(
    channels: dict[str, ScriptedChannel],
) -> None:
    compare = (Compare.create_revision(b"/lock/1") == 0,)
    success = (Op.put(b"/lock/1", b""),)
    async with etcdsync.open_client("a:1") as client:
        await client.txn(compare, success)
        assert len(client._txn_cache) == 1
        (entry,) = client._txn_cache.values()
        assert entry.compare is compare and entry.success is success
        await client.txn(compare, success)
        assert len(client._txn_cache) == 1
        first, second = (request for _, request, _ in channels["a:1"].sent)
        assert first is second is entry.request
        assert entry.idempotent is False
        # Equal tuples that are other objects are another entry with equal bytes.
        await client.txn((Compare.create_revision(b"/lock/1") == 0,), (Op.put(b"/lock/1", b""),))
        assert len(client._txn_cache) == 2
        assert channels["a:1"].sent[2][1] == first


async def test_transactions_given_as_lists_are_not_cached(channels: dict[str, ScriptedChannel]) -> None:
    async with etcdsync.open_client("a:1") as client:
        await client.txn([Compare.version(b"k") > 0], [Op.get(b"k")])
        await client.txn((Compare.version(b"k") > 0,), [Op.get(b"k")])
        nested = rpc_pb2.ResponseOp(response_txn=rpc_pb2.TxnResponse(header=HEADER, succeeded=True))
        guarded = rpc_pb2.TxnResponse(header=HEADER, succeeded=True, responses=[nested])
        channels["a:1"].script.append(guarded.SerializeToString())
        await client.txn((), (), (), guard=Compare.version(b"k") > 0)
        assert client._txn_cache == {}


async def test_the_transaction_cache_is_bounded(channels: dict[str, ScriptedChannel]) -> None:
    txns = [
        ((Compare.version(f"k{i}") > 0,), (Op.get(f"k{i}"),)) for i in range(_client._TXN_CACHE_SIZE + 10)
    ]
    async with etcdsync.open_client("a:1") as client:
        hot = txns[0]
        for compare, success in txns:
            await client.txn(compare, success)
            await client.txn(*hot)  # used all along: never the least recently used
        assert len(client._txn_cache) == _client._TXN_CACHE_SIZE
        kept = {entry.compare[0].key for entry in client._txn_cache.values()}
        # The least recently used went first; the hot one stayed.
        assert kept == {compare[0].key for compare, _ in [hot, *txns[11:]]}
        # A large transaction is sent but not kept (the cache would keep its ops alive too).
        big = (Op.put(b"big", b"x" * _client._TXN_CACHE_MAX_BYTES),)
        await client.txn((), big)
        assert all(entry.success is not big for entry in client._txn_cache.values())
        assert channels["a:1"].sent[-1][1].endswith(b"x" * _client._TXN_CACHE_MAX_BYTES)


async def test_the_transaction_cache_is_per_namespace(channels: dict[str, ScriptedChannel]) -> None:
    compare = (Compare.version(b"k") == 0,)
    success = (Op.put(b"k", b"v"),)
    async with etcdsync.open_client("a:1") as client:
        tenant = client.with_namespace(b"/t/")
        nested = tenant.with_namespace(b"x/")
        for view in (client, tenant, nested, client, tenant, nested):
            await view.txn(compare, success)
        sent = [keys_of(request) for _, request, _ in channels["a:1"].sent]
        assert sent == [[b"k", b"k"], [b"/t/k", b"/t/k"], [b"/t/x/k", b"/t/x/k"]] * 2
        assert len(client._txn_cache) == 3
        assert tenant._txn_cache is client._txn_cache


async def test_a_cached_transaction_keeps_its_read_only_flag(channels: dict[str, ScriptedChannel]) -> None:
    reads = (Op.get(b"a"), Op.txn((), (Op.get(b"b"),), ()))
    async with etcdsync.open_client(["a:1", "b:1"]) as client:
        await client.txn((), reads)
        await client.txn((), reads)  # from the cache ...
        channels["a:1"].script.append(lost("a:1", sent=True))
        await client.txn((), reads)  # ... still a read: retried on b
        assert channels["b:1"].paths() == [KV_TXN]


async def test_limits_are_checked_before_a_transaction_is_cached(
    channels: dict[str, ScriptedChannel],
) -> None:
    async with etcdsync.open_client("a:1", max_txn_ops=2) as client:
        too_many = tuple(Op.get(f"k{i}") for i in range(3))
        for _ in range(2):
            with pytest.raises(ValueError, match=r"^txn has 3 success ops; the limit is 2 "):
                await client.txn((), too_many)
        clash = (Op.put(b"k", b"1"), Op.put(b"k", b"2"))
        with pytest.raises(ValueError, match="puts key b'k' twice"):
            await client.txn((), clash)
        assert client._txn_cache == {}
        assert channels["a:1"].sent == []
