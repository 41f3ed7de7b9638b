"""The watch multiplexer, driven synchronously with scripted etcd responses.

The first part scripts single situations (creates, events, fragments, progress, compaction,
backpressure, removal in every state, unknown ids). The last part runs a model etcd server against
the mux with random writes, stream drops, replays, pauses and compactions, and checks that every
watcher received exactly the history it should: no gap, no duplicate, in order.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Sequence

import attrs
import pytest

from etcdsync.client._sansio._watch import (
    _TRANSITIONS,
    INVALID_WATCH_ID,
    Deliver,
    Established,
    LocalProtocolError,
    Reconnect,
    SendCancel,
    SendCreate,
    SendProgressRequest,
    WatchAction,
    Watcher,
    WatcherFailed,
    WatcherState,
    WatchFilter,
    WatchMux,
    WatchMuxStatistics,
    WatchResponseIn,
    WatchSpec,
    _In,
)
from etcdsync.client._types import Event, EventType, KeyValue, ResponseHeader, WatchResponse

S = WatcherState


def hdr(rev: int) -> ResponseHeader:
    return ResponseHeader(cluster_id=1, member_id=2, revision=rev, raft_term=3)


def put(key: bytes, rev: int) -> Event:
    return Event(type=EventType.PUT, kv=KeyValue(key=key, value=b"v%d" % rev, mod_revision=rev))


def created(wid: int, rev: int) -> WatchResponseIn:
    return WatchResponseIn(watch_id=wid, header=hdr(rev), created=True)


def events(wid: int, *evs: Event, rev: int | None = None, fragment: bool = False) -> WatchResponseIn:
    rev = evs[-1].kv.mod_revision if rev is None else rev
    return WatchResponseIn(watch_id=wid, header=hdr(rev), events=evs, fragment=fragment)


def progress(wid: int, rev: int) -> WatchResponseIn:
    return WatchResponseIn(watch_id=wid, header=hdr(rev))


def canceled(wid: int, rev: int = 9, *, compact: int = 0, reason: str = "") -> WatchResponseIn:
    return WatchResponseIn(
        watch_id=wid, header=hdr(rev), canceled=True, compact_revision=compact, cancel_reason=reason
    )


def refused(reason: str = "etcdserver: permission denied", compact: int = 0) -> WatchResponseIn:
    return WatchResponseIn(
        watch_id=INVALID_WATCH_ID,
        header=hdr(9),
        created=True,
        canceled=True,
        compact_revision=compact,
        cancel_reason=reason,
    )


def up_with(*specs: WatchSpec, ordered: bool = False) -> tuple[WatchMux, list[Watcher]]:
    """A mux with these watchers created and active on a fresh stream (ids 1, 2, ...)."""
    mux = WatchMux()
    watchers = [mux.add(spec)[0] for spec in specs]
    creates = mux.on_stream_up(progress_all_ordered=ordered)
    for c in creates:
        assert isinstance(c, SendCreate)
        assert mux.on_response(created(c.watch_id, 10)) == []
    assert all(w.state is S.ACTIVE for w in watchers)
    return mux, watchers


def delivered_events(actions: Sequence[object]) -> list[Event]:
    return [e for a in actions if isinstance(a, Deliver) for e in a.response.events]


A = WatchSpec(key=b"a", start_revision=5)
B = WatchSpec(key=b"b", start_revision=5)


# ---------------------------------------------------------------- creates


def test_add_while_down_creates_on_stream_up() -> None:
    mux = WatchMux()
    spec = WatchSpec(
        key=b"p/",
        range_end=b"p0",
        start_revision=7,
        prev_kv=True,
        filters=(WatchFilter.NODELETE,),
        progress_notify=True,
    )
    w, actions = mux.add(spec)
    assert actions == []
    assert (w.state, w.next_revision, w.watch_id) == (S.PENDING_SEND, 7, 0)
    assert mux.on_stream_up() == [
        SendCreate(
            watch_id=1,
            key=b"p/",
            range_end=b"p0",
            start_revision=7,
            prev_kv=True,
            filters=(WatchFilter.NODELETE,),
            progress_notify=True,
            fragment=True,
        )
    ]
    assert (w.state, w.watch_id) == (S.CREATING, 1)


def test_creates_are_pipelined_and_ids_count_up_across_streams() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    _, [c1] = mux.add(A)
    _, [c2] = mux.add(B)
    assert isinstance(c1, SendCreate)
    assert isinstance(c2, SendCreate)
    assert (c1.watch_id, c2.watch_id) == (1, 2)
    mux.on_stream_down()
    assert [c.watch_id for c in mux.on_stream_up() if isinstance(c, SendCreate)] == [3, 4]


def test_created_and_events_deliver_in_order() -> None:
    mux, [w] = up_with(A)
    resp = events(1, put(b"a", 6), put(b"a", 8), rev=9)
    assert mux.on_response(resp) == [
        Deliver(w, WatchResponse(header=hdr(9), events=(put(b"a", 6), put(b"a", 8))))
    ]
    assert w.next_revision == 9


def test_created_answers_oldest_create_even_with_id_minus_one() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    wa, _ = mux.add(A)
    wb, _ = mux.add(B)
    assert mux.on_response(refused()) == [WatcherFailed(watcher=wa, reason="etcdserver: permission denied")]
    assert wa.state is S.FAILED
    assert mux.on_response(created(2, 10)) == []
    assert wb.state is S.ACTIVE
    assert mux.on_response(events(2, put(b"b", 11))) != []


def test_server_assigned_ids_are_adopted_from_created() -> None:
    """A server that numbers its own watchers (the gRPC proxy) reveals the id in ``created``."""
    mux = WatchMux()
    mux.on_stream_up()
    w, _ = mux.add(A)
    mux.on_response(created(0, 10))
    assert w.watch_id == 0
    assert delivered_events(mux.on_response(events(0, put(b"a", 11)))) == [put(b"a", 11)]
    assert mux.on_response(events(1, put(b"a", 12))) == []  # our own id means nothing to this server
    assert mux.remove(w) == [SendCancel(0)]


# ---------------------------------------------------------------- start revision 0


def test_start_zero_starts_after_created_header() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w, [c] = mux.add(WatchSpec(key=b"a"))
    assert isinstance(c, SendCreate)
    assert c.start_revision == 0
    assert w.next_revision == 0
    mux.on_response(created(1, 20))
    assert w.next_revision == 21
    # etcd registers the watcher before reading the header: events at or below it are dropped.
    assert mux.on_response(events(1, put(b"a", 19), put(b"a", 20))) == []
    assert delivered_events(mux.on_response(events(1, put(b"a", 21)))) == [put(b"a", 21)]


def test_start_zero_recreated_with_zero_when_stream_broke_before_created() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w, _ = mux.add(WatchSpec(key=b"a"))
    mux.on_stream_down()
    assert w.state is S.PENDING_SEND
    [c] = mux.on_stream_up()
    assert isinstance(c, SendCreate)
    assert (c.watch_id, c.start_revision) == (2, 0)
    mux.on_response(created(2, 30))
    mux.on_stream_down()
    [c] = mux.on_stream_up()
    assert isinstance(c, SendCreate)
    assert c.start_revision == 31


# ---------------------------------------------------------------- established


def test_established_start_zero_is_the_created_header_once_asked() -> None:
    mux = WatchMux()
    w, _ = mux.add(WatchSpec(key=b"a"))
    assert mux.request_established(w) == []  # not even sent yet
    mux.on_stream_up()
    mux.on_stream_down()  # a break before `created` only delays it
    [c] = mux.on_stream_up()
    assert isinstance(c, SendCreate)
    assert mux.on_response(created(c.watch_id, 20)) == [Established(w, 20)]
    assert (w.established_revision, w.wants_established) == (20, False)
    # Asked again (or later): at once, and it does not move with deliveries or re-creates.
    mux.on_response(events(c.watch_id, put(b"a", 21)))
    mux.on_stream_down()
    [c] = mux.on_stream_up()
    assert isinstance(c, SendCreate)
    assert mux.on_response(created(c.watch_id, 30)) == []
    assert mux.request_established(w) == [Established(w, 20)]


def test_established_explicit_start_and_unasked() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    asked, _ = mux.add(A)
    silent, _ = mux.add(B)
    mux.request_established(asked)
    assert mux.on_response(created(1, 10)) == [Established(asked, 4)]  # start_revision 5 - 1
    assert mux.on_response(created(2, 10)) == []  # nobody asked: nothing emitted
    assert mux.request_established(silent) == [Established(silent, 4)]


def test_established_while_pausing_and_not_when_removed_or_refused() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    paused, _ = mux.add(WatchSpec(key=b"a"))
    removed, _ = mux.add(WatchSpec(key=b"b"))
    refused_w, _ = mux.add(WatchSpec(key=b"c"))
    for w in (paused, removed, refused_w):
        mux.request_established(w)
    mux.pause(paused)
    mux.remove(removed)
    # Paused mid-create: established all the same (it resumes from the header's revision + 1).
    assert mux.on_response(created(1, 20)) == [Established(paused, 20), SendCancel(1)]
    assert mux.on_response(created(2, 20)) == [SendCancel(2)]  # its consumer is gone
    assert mux.on_response(refused()) == [
        WatcherFailed(watcher=refused_w, reason="etcdserver: permission denied")
    ]
    assert refused_w.established_revision is None


# ---------------------------------------------------------------- reconnects


def test_reconnect_resumes_from_next_revision_and_drops_replays() -> None:
    mux, [w] = up_with(A)
    mux.on_response(events(1, put(b"a", 6), put(b"a", 7)))
    assert mux.on_stream_down() == []
    assert mux.on_stream_down() == []  # idempotent
    [c] = mux.on_stream_up()
    assert isinstance(c, SendCreate)
    assert c.start_revision == 8
    mux.on_response(created(2, 12))
    assert mux.on_response(events(1, put(b"a", 9))) == []  # the old stream's id is void
    assert mux.on_response(events(2, put(b"a", 6), put(b"a", 7))) == []  # replay
    acts = mux.on_response(events(2, put(b"a", 7), put(b"a", 8), put(b"a", 9)))
    assert delivered_events(acts) == [put(b"a", 8), put(b"a", 9)]
    assert w.next_revision == 10


def test_stream_up_twice_is_a_local_protocol_error() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    with pytest.raises(LocalProtocolError, match=r"^stream is UP, cannot go UP$"):
        mux.on_stream_up()


def test_responses_while_down_are_ignored() -> None:
    mux, [w] = up_with(A)
    mux.on_stream_down()
    assert mux.on_response(events(1, put(b"a", 6))) == []
    assert mux.on_response(created(1, 10)) == []
    assert w.next_revision == 5


@pytest.mark.parametrize(
    "reason", ["etcdserver: no leader", "etcdserver: invalid auth token", "revision of auth store is old"]
)
def test_member_level_cancel_reason_asks_for_reconnect(reason: str) -> None:
    mux, [wa, wb] = up_with(A, B)
    mux.on_response(events(1, put(b"a", 6)))
    assert mux.on_response(canceled(1, reason=reason)) == [Reconnect(reason)]
    assert mux.statistics().stream_up is False
    assert (wa.state, wb.state) == (S.PENDING_SEND, S.PENDING_SEND)
    assert mux.on_response(events(2, put(b"b", 6))) == []  # the doomed stream is ignored
    assert mux.on_stream_down() == []
    starts = [c.start_revision for c in mux.on_stream_up() if isinstance(c, SendCreate)]
    assert starts == [7, 5]


def test_refused_create_for_member_reason_reconnects() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w, _ = mux.add(A)
    assert mux.on_response(refused("etcdserver: invalid auth token")) == [
        Reconnect("etcdserver: invalid auth token")
    ]
    assert w.state is S.PENDING_SEND


# ---------------------------------------------------------------- compaction and server cancels


def test_compaction_after_created_fails_only_that_watcher() -> None:
    """etcd 3.4: ``created`` first, then a separate ``canceled`` with the compact revision."""
    mux, [wa, _] = up_with(A, B)
    # The cancel by id frees etcd 3.4's entry for the compacted watcher on the stream.
    assert mux.on_response(canceled(1, compact=8)) == [
        SendCancel(1),
        WatcherFailed(watcher=wa, compact_revision=8),
    ]
    assert wa.state is S.FAILED
    assert mux.on_response(events(1, put(b"a", 9))) == []
    assert delivered_events(mux.on_response(events(2, put(b"b", 9)))) == [put(b"b", 9)]
    assert mux.statistics() == WatchMuxStatistics(
        watchers=1, pending_creates=0, active=1, paused=0, stream_up=True
    )


def test_compaction_combined_with_created() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w, _ = mux.add(A)
    reason = "etcdserver: mvcc: required revision has been compacted"
    assert mux.on_response(refused(reason, compact=8)) == [
        WatcherFailed(watcher=w, compact_revision=8, reason=reason)
    ]


def test_unexplained_server_cancel_fails_the_watcher() -> None:
    mux, [w] = up_with(A)
    assert mux.on_response(canceled(1)) == [WatcherFailed(watcher=w, reason="watch canceled by the server")]
    reason = "etcdserver: permission denied"
    mux2, [w2] = up_with(A)
    assert mux2.on_response(canceled(1, reason=reason)) == [WatcherFailed(watcher=w2, reason=reason)]


def test_unknown_ids_and_unasked_created_are_ignored() -> None:
    mux, [w] = up_with(A)
    assert mux.on_response(events(42, put(b"a", 6))) == []
    assert mux.on_response(canceled(42)) == []
    assert mux.on_response(progress(42, 9)) == []
    assert mux.on_response(created(42, 9)) == []  # no create is awaiting one
    assert mux.on_response(progress(INVALID_WATCH_ID, 9)) == []  # no progress request out
    assert w.next_revision == 5


# ---------------------------------------------------------------- fragments


def test_fragments_are_reassembled_and_delivered_once() -> None:
    mux, [w] = up_with(A)
    evs = [put(b"a", r) for r in (6, 6, 7, 8)]
    assert mux.on_response(events(1, evs[0], rev=8, fragment=True)) == []
    assert mux.on_response(events(1, evs[1], evs[2], rev=8, fragment=True)) == []
    assert w.next_revision == 5
    assert mux.on_response(events(1, evs[3], rev=8)) == [
        Deliver(w, WatchResponse(header=hdr(8), events=tuple(evs)))
    ]
    assert w.next_revision == 9


def test_stream_break_mid_fragment_discards_the_partial_response() -> None:
    mux, _ = up_with(A)
    mux.on_response(events(1, put(b"a", 6), rev=7, fragment=True))
    mux.on_stream_down()
    [c] = mux.on_stream_up()
    assert isinstance(c, SendCreate)
    assert c.start_revision == 5
    mux.on_response(created(2, 10))
    mux.on_response(events(2, put(b"a", 6), rev=7, fragment=True))
    assert delivered_events(mux.on_response(events(2, put(b"a", 7)))) == [put(b"a", 6), put(b"a", 7)]


# ---------------------------------------------------------------- progress


def test_per_watcher_progress_is_a_bookmark_that_advances() -> None:
    mux, [w] = up_with(WatchSpec(key=b"a", start_revision=5, progress_notify=True))
    assert mux.on_response(progress(1, 40)) == [Deliver(w, WatchResponse(header=hdr(40)))]
    assert w.next_revision == 41
    assert mux.on_response(progress(1, 30)) == [Deliver(w, WatchResponse(header=hdr(30)))]
    assert w.next_revision == 41  # never backwards
    assert mux.on_response(events(1, put(b"a", 40))) == []


@pytest.mark.parametrize("ordered", [True, False])
def test_stream_wide_progress_goes_to_askers_and_advances_only_when_ordered(ordered: bool) -> None:
    mux, [wa, wb] = up_with(A, B, ordered=ordered)
    assert mux.request_progress(wa) == [SendProgressRequest()]
    assert mux.request_progress(wa) == []  # one request out at a time
    assert mux.on_response(progress(INVALID_WATCH_ID, 50)) == [Deliver(wa, WatchResponse(header=hdr(50)))]
    assert (wa.next_revision, wb.next_revision) == ((51, 51) if ordered else (5, 5))
    assert not wa.wants_progress
    assert mux.on_response(progress(INVALID_WATCH_ID, 60)) == []  # unasked


def test_stream_wide_progress_ignores_watchers_created_after_the_request() -> None:
    mux, [wa] = up_with(A, ordered=True)
    assert mux.request_progress(wa) == [SendProgressRequest()]
    wb, _ = mux.add(B)
    mux.on_response(created(2, 10))
    assert mux.request_progress(wb) == []
    assert mux.on_response(progress(INVALID_WATCH_ID, 50)) == [
        Deliver(wa, WatchResponse(header=hdr(50))),
        SendProgressRequest(),  # wb is still waiting, and now it is covered
    ]
    assert (wa.next_revision, wb.next_revision) == (51, 5)
    assert mux.on_response(progress(INVALID_WATCH_ID, 55)) == [Deliver(wb, WatchResponse(header=hdr(55)))]
    assert wb.next_revision == 56


def test_progress_request_waits_for_the_asker_to_be_created() -> None:
    mux = WatchMux()
    w, _ = mux.add(A)
    assert mux.request_progress(w) == []  # stream down
    mux.on_stream_up(progress_all_ordered=True)
    assert mux.request_progress(w) == []  # still creating
    assert mux.on_response(created(1, 10)) == [SendProgressRequest()]


def test_progress_answer_racing_ahead_of_created_is_not_applied() -> None:
    """etcd holds a new watcher's events until its ``created`` is out, but not the -1 answer."""
    mux, [wa] = up_with(A, ordered=True)
    assert mux.request_progress(wa) == [SendProgressRequest()]
    wb, _ = mux.add(B)
    mux.request_progress(wb)
    mux.on_stream_down()  # the outstanding request dies with the stream
    mux.on_stream_up(progress_all_ordered=True)
    assert mux.on_response(created(3, 10)) == [SendProgressRequest()]  # wa; wb is not created yet
    actions = mux.on_response(progress(INVALID_WATCH_ID, 50))
    assert actions == [Deliver(wa, WatchResponse(header=hdr(50)))]
    assert wb.next_revision == 5
    assert mux.on_response(created(4, 10)) == [SendProgressRequest()]
    assert mux.on_response(events(4, put(b"b", 20))) != []  # held back by etcd, still delivered


def test_stream_wide_cancel_or_events_with_minus_one_are_ignored() -> None:
    mux, [w] = up_with(A, ordered=True)
    mux.request_progress(w)
    assert mux.on_response(canceled(INVALID_WATCH_ID)) == []
    assert mux.on_response(events(INVALID_WATCH_ID, put(b"a", 6))) == []
    assert mux.on_response(progress(INVALID_WATCH_ID, 9)) == [Deliver(w, WatchResponse(header=hdr(9)))]


# ---------------------------------------------------------------- backpressure


def test_pause_cancels_and_drops_resume_replays_from_next_revision() -> None:
    mux, [w] = up_with(A)
    mux.on_response(events(1, put(b"a", 6)))
    mux.on_response(events(1, put(b"a", 7), rev=8, fragment=True))
    assert mux.pause(w) == [SendCancel(1)]
    assert w.state is S.PAUSED
    assert mux.pause(w) == []
    assert mux.on_response(events(1, put(b"a", 8))) == []  # dropped, not buffered
    assert mux.on_response(canceled(1)) == []  # the answer to our cancel
    assert mux.statistics().paused == 1
    assert mux.resume(w) == [
        SendCreate(
            watch_id=2,
            key=b"a",
            range_end=b"",
            start_revision=7,
            prev_kv=False,
            filters=(),
            progress_notify=False,
        )
    ]
    mux.on_response(created(2, 12))
    acts = mux.on_response(events(2, put(b"a", 7), put(b"a", 8)))
    assert delivered_events(acts) == [put(b"a", 7), put(b"a", 8)]


def test_pause_and_resume_while_down() -> None:
    mux = WatchMux()
    w, _ = mux.add(A)
    assert mux.pause(w) == []
    assert mux.on_stream_up() == []
    mux.on_stream_down()
    assert w.state is S.PAUSED
    assert mux.resume(w) == []
    assert w.state is S.PENDING_SEND
    assert [type(a) for a in mux.on_stream_up()] == [SendCreate]


def test_pause_while_creating_cancels_once_created() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w, _ = mux.add(WatchSpec(key=b"a"))
    assert mux.pause(w) == []
    assert w.state is S.PAUSING
    assert mux.pause(w) == []
    assert mux.statistics().paused == 1
    assert mux.on_response(created(1, 20)) == [SendCancel(1)]
    assert (w.state, w.next_revision) == (S.PAUSED, 21)  # established: resumes from there


def test_resume_while_pausing_keeps_the_create() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w, _ = mux.add(A)
    mux.pause(w)
    assert mux.resume(w) == []
    assert mux.on_response(created(1, 10)) == []
    assert w.state is S.ACTIVE
    assert mux.resume(w) == []  # not paused: no-op


def test_stream_down_while_pausing_leaves_it_paused() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w, _ = mux.add(A)
    mux.pause(w)
    mux.on_stream_down()
    assert w.state is S.PAUSED
    assert mux.on_stream_up() == []


def test_refused_while_pausing_fails() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w, _ = mux.add(A)
    mux.pause(w)
    assert mux.on_response(refused()) == [WatcherFailed(watcher=w, reason="etcdserver: permission denied")]
    assert mux.pause(w) == []
    assert mux.resume(w) == []
    assert w.state is S.FAILED


# ---------------------------------------------------------------- remove, in every state


def test_remove_pending_send() -> None:
    mux = WatchMux()
    w, _ = mux.add(A)
    assert mux.remove(w) == []
    assert w.state is S.CLOSED
    assert mux.on_stream_up() == []
    assert mux.statistics().watchers == 0


@pytest.mark.parametrize("pause_first", [False, True])
def test_remove_creating_cancels_when_created(pause_first: bool) -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w, _ = mux.add(A)
    if pause_first:
        mux.pause(w)
    assert mux.remove(w) == []
    assert w.state is S.CANCELLING
    assert mux.remove(w) == []
    assert (mux.pause(w), mux.resume(w)) == ([], [])
    assert mux.on_response(created(1, 10)) == [SendCancel(1)]
    assert w.state is S.CLOSED
    assert mux.on_response(events(1, put(b"a", 11))) == []
    assert mux.statistics().watchers == 0


def test_remove_creating_then_refused_or_stream_down() -> None:
    mux = WatchMux()
    mux.on_stream_up()
    w1, _ = mux.add(A)
    w2, _ = mux.add(B)
    mux.remove(w1)
    mux.remove(w2)
    assert mux.on_response(refused()) == []  # nobody to tell
    assert w1.state is S.CLOSED
    mux.on_stream_down()
    assert w2.state is S.CLOSED
    assert mux.statistics().watchers == 0


def test_remove_active_sends_cancel() -> None:
    mux, [w] = up_with(A)
    assert mux.remove(w) == [SendCancel(1)]
    assert mux.on_response(events(1, put(b"a", 6))) == []
    assert mux.on_response(canceled(1)) == []


def test_remove_paused_failed_and_closed() -> None:
    mux, [wa, wb] = up_with(A, B)
    mux.pause(wa)
    assert mux.remove(wa) == []
    mux.on_response(canceled(2, compact=3))
    assert mux.remove(wb) == []
    assert mux.remove(wb) == []
    assert (mux.pause(wb), mux.resume(wb)) == ([], [])
    assert (wa.state, wb.state) == (S.CLOSED, S.CLOSED)


# ---------------------------------------------------------------- the machine itself


def test_missing_transition_raises() -> None:
    w = Watcher(A, next_revision=5)
    with pytest.raises(LocalProtocolError, match=r"^watcher in state PENDING_SEND cannot take CREATED$"):
        w._go(_In.CREATED)


def test_terminal_states_stay_terminal() -> None:
    for (old, _event), new in _TRANSITIONS.items():
        if old in (S.FAILED, S.CLOSED):
            assert new in (S.FAILED, S.CLOSED)
        if old is S.CLOSED:
            assert new is S.CLOSED


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="start_revision"):
        WatchSpec(key=b"a", start_revision=-1)
    with pytest.raises(TypeError, match="key"):
        WatchSpec(key="a")  # type: ignore[arg-type]


def test_repr_and_statistics() -> None:
    mux = WatchMux()
    w, _ = mux.add(A)
    assert repr(w).startswith("<Watcher at 0x")
    assert "PENDING_SEND, key=b'a', watch_id=0, next_revision=5>" in repr(w)
    assert mux.statistics() == WatchMuxStatistics(
        watchers=1, pending_creates=1, active=0, paused=0, stream_up=False
    )
    mux.on_stream_up()
    assert mux.statistics().pending_creates == 1
    mux.on_response(created(1, 10))
    assert mux.statistics() == WatchMuxStatistics(
        watchers=1, pending_creates=0, active=1, paused=0, stream_up=True
    )


# ---------------------------------------------------------------- property test: a model etcd

KEYS = (b"a/1", b"a/2", b"a/3", b"b/1", b"b/2")
SPECS = (
    WatchSpec(key=b"a/", range_end=b"a0"),  # prefix, from now
    WatchSpec(key=b"a/2", start_revision=2),  # single key, from the past
    WatchSpec(key=b"", range_end=b"\0", start_revision=1),  # everything
    WatchSpec(key=b"b/", range_end=b"b0", filters=(WatchFilter.NODELETE,), progress_notify=True),
    WatchSpec(key=b"a/1", progress_notify=True),  # single key, from now
)


def _matches(spec: WatchSpec, ev: Event) -> bool:
    key = ev.kv.key
    if spec.range_end == b"":
        in_range = key == spec.key
    elif spec.range_end == b"\0":
        in_range = key >= spec.key
    else:
        in_range = spec.key <= key < spec.range_end
    dropped = {WatchFilter.NOPUT: EventType.PUT, WatchFilter.NODELETE: EventType.DELETE}
    return in_range and all(dropped[f] is not ev.type for f in spec.filters)


@attrs.define
class _ServerWatcher:
    spec: WatchSpec
    sent_upto: int  # last revision whose events were queued
    progress_notify: bool


@attrs.define
class ModelEtcd:
    """Enough of etcd's watch semantics to exercise the mux: one stream at a time."""

    rng: random.Random
    ordered_progress: bool
    own_ids: bool  # number watchers itself, like the gRPC proxy
    rev: int = 1
    compacted: int = 0
    history: list[tuple[int, tuple[Event, ...]]] = attrs.field(factory=list)
    live: dict[bytes, KeyValue] = attrs.field(factory=dict)
    up: bool = False
    watchers: dict[int, _ServerWatcher] = attrs.field(factory=dict)
    out: deque[WatchResponseIn] = attrs.field(factory=deque)
    next_own_id: int = 0

    def write(self) -> None:
        rev = self.rev + 1
        evs: list[Event] = []
        if self.live and self.rng.random() < 0.25:
            key = self.rng.choice(sorted(self.live))
            del self.live[key]
            evs.append(Event(type=EventType.DELETE, kv=KeyValue(key=key, mod_revision=rev)))
        else:
            for key in sorted(self.rng.sample(KEYS, self.rng.randint(1, 3))):  # a txn: one revision
                old = self.live.get(key)
                kv = KeyValue(
                    key=key,
                    value=b"%d" % rev,
                    create_revision=old.create_revision if old else rev,
                    mod_revision=rev,
                    version=old.version + 1 if old else 1,
                )
                self.live[key] = kv
                evs.append(Event(type=EventType.PUT, kv=kv))
        self.rev = rev
        self.history.append((rev, tuple(evs)))

    def connect(self) -> None:
        self.up, self.watchers, self.out = True, {}, deque()

    def disconnect(self) -> None:
        self.up, self.watchers, self.out = False, {}, deque()

    def handle(self, action: object) -> None:
        assert self.up, f"mux sent {action} with no stream"
        if isinstance(action, SendCreate):
            self._create(action)
        elif isinstance(action, SendCancel):
            if self.watchers.pop(action.watch_id, None) is not None:
                self.out.append(canceled(action.watch_id, self.rev))
        else:
            assert isinstance(action, SendProgressRequest)
            if self.ordered_progress:
                self.flush_all()
                self.out.append(progress(INVALID_WATCH_ID, self.rev))
            else:
                # Before etcd 3.4.25 the answer came from the control channel at once, racing events.
                spots = [i for i in range(len(self.out) + 1) if i == 0 or not self.out[i - 1].fragment]
                last_ctrl = max((i + 1 for i, r in enumerate(self.out) if r.created or r.canceled), default=0)
                pos = self.rng.choice([i for i in spots if i >= last_ctrl] or [len(self.out)])
                self.out.insert(pos, progress(INVALID_WATCH_ID, self.rev))

    def _create(self, req: SendCreate) -> None:
        if self.own_ids:
            wid, self.next_own_id = self.next_own_id, self.next_own_id + 1
        else:
            wid = req.watch_id
        # etcd's sendLoop selects between its control channel (created) and the watch channel (the
        # -1 progress answer of etcd >= 3.4.25), so a later `created` may overtake a queued answer.
        # Control responses stay in request order among themselves (the mux matches them by order).
        ctrl_pos = len(self.out)
        answers = [i for i, r in enumerate(self.out) if r.watch_id == INVALID_WATCH_ID and not r.created]
        last_ctrl = max((i for i, r in enumerate(self.out) if r.created), default=-1)
        if self.ordered_progress and answers and answers[-1] > last_ctrl and self.rng.random() < 0.5:
            ctrl_pos = answers[-1]
        if self.rng.random() < 0.02:
            self.out.insert(ctrl_pos, refused())
            return
        spec = WatchSpec(key=req.key, range_end=req.range_end, filters=req.filters)
        start = req.start_revision or self.rev + 1
        if req.start_revision == 0 and self.rng.random() < 0.3:
            self.write()  # a write between registering the watcher and reading the header
        self.out.insert(ctrl_pos, created(wid, self.rev))
        if start < self.compacted:
            self.out.append(canceled(wid, self.rev, compact=self.compacted))
            return
        sent_upto = start - 1
        if req.start_revision and self.rng.random() < 0.3:  # replay some history below the start
            sent_upto = max(self.compacted - 1, sent_upto - self.rng.randint(1, 4))
        self.watchers[wid] = _ServerWatcher(spec, sent_upto, req.progress_notify)

    def flush(self, wid: int) -> None:
        sw = self.watchers[wid]
        revs = [
            (rev, evs)
            for rev, evs in self.history
            if rev > sw.sent_upto and any(_matches(sw.spec, e) for e in evs)
        ]
        sw.sent_upto = self.rev
        while revs:  # batches of whole revisions, sometimes fragmented
            n = self.rng.randint(1, 3)
            take, revs = revs[:n], revs[n:]
            batch = [e for _, evs in take for e in evs if _matches(sw.spec, e)]
            header = hdr(self.rng.randint(take[-1][0], self.rev))
            if len(batch) > 1 and self.rng.random() < 0.4:
                cuts = sorted(self.rng.sample(range(1, len(batch)), self.rng.randint(1, len(batch) - 1)))
                pieces = [batch[i:j] for i, j in zip([0, *cuts], [*cuts, len(batch)], strict=True)]
                for i, piece in enumerate(pieces):
                    last = i == len(pieces) - 1
                    self.out.append(
                        WatchResponseIn(watch_id=wid, header=header, events=tuple(piece), fragment=not last)
                    )
            elif batch:
                resp = WatchResponseIn(watch_id=wid, header=header, events=tuple(batch))
                self.out.append(resp)
                if self.rng.random() < 0.1:
                    self.out.append(resp)  # a duplicate response

    def flush_all(self) -> None:
        for wid in list(self.watchers):
            self.flush(wid)

    def progress_tick(self) -> None:
        for wid, sw in list(self.watchers.items()):
            if sw.progress_notify:
                self.flush(wid)
                self.out.append(progress(wid, self.rev))

    def no_leader(self) -> None:
        if self.watchers:
            wid = self.rng.choice(sorted(self.watchers))
            self.out.append(canceled(wid, self.rev, reason="etcdserver: no leader"))

    def expected(self, spec: WatchSpec, start: int) -> list[Event]:
        return [e for rev, evs in self.history if rev >= start for e in evs if _matches(spec, e)]


@attrs.define
class Harness:
    """Drives a mux against a :class:`ModelEtcd` and records what each watcher got."""

    mux: WatchMux
    etcd: ModelEtcd
    got: dict[Watcher, list[WatchResponse]] = attrs.field(factory=dict)
    failed: dict[Watcher, WatcherFailed] = attrs.field(factory=dict)
    start: dict[Watcher, int] = attrs.field(factory=dict)  # effective start revision
    removed: set[Watcher] = attrs.field(factory=set)
    reconnects: int = 0

    def apply(self, actions: Sequence[WatchAction]) -> None:
        for action in actions:
            if isinstance(action, Deliver):
                assert action.watcher not in self.removed
                self.got[action.watcher].append(action.response)
            elif isinstance(action, WatcherFailed):
                self.failed[action.watcher] = action
            elif isinstance(action, Reconnect):
                self.reconnects += 1
                self.etcd.disconnect()
                self.apply(self.mux.on_stream_down())
            else:
                self.etcd.handle(action)
        for w in self.got:  # a start-0 watcher's history starts where it was established
            if w not in self.start and w.next_revision:
                self.start[w] = w.next_revision

    def add(self, spec: WatchSpec) -> None:
        w, actions = self.mux.add(spec)
        self.got[w] = []
        if spec.start_revision:
            self.start[w] = spec.start_revision
        self.apply(actions)

    def live(self) -> list[Watcher]:
        return [w for w in self.got if w not in self.failed and w not in self.removed]

    def stream_up(self) -> None:
        self.etcd.connect()
        self.apply(self.mux.on_stream_up(progress_all_ordered=self.etcd.ordered_progress))

    def deliver(self, n: int) -> None:
        for _ in range(n):
            if not self.etcd.out:
                return
            self.apply(self.mux.on_response(self.etcd.out.popleft()))

    def step(self, rng: random.Random) -> None:
        r = rng.random()
        live = self.live()
        if not self.etcd.up:
            if r < 0.3:
                self.stream_up()
            elif r < 0.6:
                self.etcd.write()
        elif r < 0.25:
            self.etcd.write()
        elif r < 0.4:
            self.etcd.flush_all()
        elif r < 0.7:
            self.deliver(rng.randint(1, 4))
        elif r < 0.74:  # the stream breaks at an arbitrary point: mid-fragment, before `created`...
            self.etcd.disconnect()
            self.apply(self.mux.on_stream_down())
        elif r < 0.8 and live:
            w = rng.choice(live)
            self.apply(self.mux.resume(w) if w.state is S.PAUSED else self.mux.pause(w))
        elif r < 0.84 and live:
            self.apply(self.mux.request_progress(rng.choice(live)))
        elif r < 0.88:
            self.etcd.progress_tick()
        elif r < 0.89:
            self.etcd.flush_all()  # etcd keeps synced watchers caught up, so compaction spares them
            self.etcd.compacted = rng.randint(self.etcd.compacted, self.etcd.rev)
        elif r < 0.92:
            past = rng.randint(max(1, self.etcd.compacted), self.etcd.rev)
            self.add(attrs.evolve(rng.choice(SPECS), start_revision=rng.choice([0, past])))
        elif r < 0.93 and live:
            w = rng.choice(live)
            self.removed.add(w)
            self.apply(self.mux.remove(w))
        elif r < 0.935:
            self.etcd.no_leader()

    def settle(self) -> None:
        """Heal everything and let every live watcher catch up with the whole history."""
        if not self.etcd.up:
            self.stream_up()
        for w in self.live():
            self.apply(self.mux.resume(w))
        for _ in range(1000):
            self.etcd.flush_all()
            if not self.etcd.out:
                break
            self.deliver(len(self.etcd.out))
            if not self.etcd.up:
                self.stream_up()
        else:
            pytest.fail("the mux never settled")

    def check(self) -> None:
        for w, responses in self.got.items():
            evs = [e for resp in responses for e in resp.events]
            revs = [e.kv.mod_revision for e in evs]
            assert revs == sorted(revs), f"{w}: out of order"
            for prev, nxt in itertools.pairwise(responses):  # atomic: no revision split
                if prev.events and nxt.events:
                    assert prev.events[-1].kv.mod_revision < nxt.events[0].kv.mod_revision
            if self.etcd.ordered_progress:  # bookmarkable: nothing at or below a bookmark after it
                floor = 0
                for resp in responses:
                    if resp.events:
                        assert resp.events[0].kv.mod_revision > floor, f"{w}: event below a bookmark"
                    else:
                        floor = max(floor, resp.header.revision)
            if w not in self.start:  # never established: never delivered anything
                assert evs == [], w
                continue
            expected = self.etcd.expected(w.spec, self.start[w])
            if w in self.failed or w in self.removed:
                assert evs == expected[: len(evs)], f"{w}: gap or duplicate"
                fail = self.failed.get(w)
                if fail is not None and fail.compact_revision:
                    assert w.next_revision < fail.compact_revision
            else:
                assert w.state is S.ACTIVE
                assert evs == expected, f"{w}: gap or duplicate"


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered_progress", "racing_progress"])
@pytest.mark.parametrize("own_ids", [False, True], ids=["client_ids", "server_ids"])
@pytest.mark.parametrize("seed", range(60))
def test_every_watcher_gets_exactly_its_history(seed: int, ordered: bool, own_ids: bool) -> None:
    rng = random.Random(seed)
    etcd = ModelEtcd(random.Random(seed + 1_000_000), ordered_progress=ordered, own_ids=own_ids)
    for _ in range(rng.randint(1, 6)):
        etcd.write()
    h = Harness(WatchMux(), etcd)
    for spec in SPECS:
        h.add(spec)
    for _ in range(400):
        h.step(rng)
    h.settle()
    h.check()
    assert any(h.got.values()), "the run delivered nothing"
