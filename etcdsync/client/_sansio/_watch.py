"""The watch multiplexer: every watcher of a client on one etcd Watch stream, as a pure state machine.

All watchers of a connection share one bidirectional ``Watch`` stream. :class:`WatchMux` owns their
specs, the creates in flight, ``watch_id → watcher`` and each watcher's **next revision**; the trio
shell feeds it inputs and carries out the actions it returns (see STYLE rules 2, 3, 5)::

    mux = WatchMux()
    watcher, actions = mux.add(WatchSpec(key=b"k", range_end=b"l"))  # [] while the stream is down
    actions = mux.on_stream_up()         # [SendCreate(watch_id=1, ...)]
    actions = mux.on_response(created)   # [] (or a progress request someone was waiting for)
    actions = mux.on_response(events)    # [Deliver(watcher, WatchResponse(...))]
    actions = mux.on_stream_down()       # []; every watch id is void, nothing is lost

Inputs: :meth:`~WatchMux.add`, :meth:`~WatchMux.remove`, :meth:`~WatchMux.pause`,
:meth:`~WatchMux.resume`, :meth:`~WatchMux.request_progress`, :meth:`~WatchMux.request_established`,
:meth:`~WatchMux.on_stream_up`, :meth:`~WatchMux.on_response`, :meth:`~WatchMux.on_stream_down`.
Outputs: :class:`SendCreate`, :class:`SendCancel`, :class:`SendProgressRequest`, :class:`Deliver`,
:class:`Established`, :class:`WatcherFailed`, :class:`Reconnect`. Nothing here blocks, sleeps or
reads a clock.

**Exactly once, in order.** A watcher's next revision is the last delivered event's ``mod_revision``
+ 1 (or the bookmark of a progress notification that covers it). Every (re)create asks for
``start_revision = next_revision``, and events below it are dropped, so a replay after a reconnect
delivers nothing twice and skips nothing. etcd never splits one revision over two responses (it
batches whole revisions, and fragments are reassembled here before anything is delivered), so the
per-event filter cannot cut a revision in half.

**Start revision 0** means "from when the watch is established": the effective start is the
``created`` response's ``header.revision`` + 1, and only events above it are delivered. etcd reads
that header *after* registering the watcher (``v3rpc/watch.go`` recvLoop: ``watchStream.Watch`` then
``watchStream.Rev()``), so a write landing in between makes the server send a few events at or below
it; they are dropped, which keeps the watch's history exactly "everything after header.revision".
A start-0 watcher whose stream breaks before its ``created`` arrived delivered nothing and is
re-created with 0 again: it is established later, and its history starts then.

**Backpressure.** The shell gives each watcher a bounded channel. When one is full the shell calls
:meth:`~WatchMux.pause`: the mux cancels that watcher's server-side watch and drops whatever still
arrives for it, without buffering. Nothing is lost, because its next revision does not move; on
:meth:`~WatchMux.resume` it is re-created from there and etcd replays the history. A slow consumer
thus slows only itself, and client memory stays bounded by the channels (plus one etcd response
being reassembled). If the history was compacted meanwhile, the resume fails with the compaction
revision, which is the truth.

**Progress.** A response for one watcher with no events that is neither created nor canceled is a
per-watcher progress notification (``progress_notify=True``): etcd sends it only while that watcher
is synced, through the same channel as its events, so it advances the next revision and is delivered
as an empty :class:`~etcdsync.client._types.WatchResponse` (a bookmark). A stream-wide one answers
:class:`SendProgressRequest` with ``watch_id = -1`` (``clientv3.InvalidWatchID``); see
:meth:`WatchMux.on_stream_up` for when it may advance next revisions, and
:meth:`WatchMux.request_progress` for who receives it.
"""

from __future__ import annotations

import enum
from typing import Final, TypeAlias, final

import attrs

from .._types import Event, ResponseHeader, WatchResponse

__all__ = [
    "INVALID_WATCH_ID",
    "Deliver",
    "Established",
    "LocalProtocolError",
    "Reconnect",
    "SendCancel",
    "SendCreate",
    "SendProgressRequest",
    "WatchAction",
    "WatchFilter",
    "WatchMux",
    "WatchMuxStatistics",
    "WatchResponseIn",
    "WatchSpec",
    "Watcher",
    "WatcherFailed",
    "WatcherState",
]

# etcd's clientv3.InvalidWatchID: the id of a refused create and of a stream-wide progress notification.
INVALID_WATCH_ID: Final = -1

# Cancel reasons that indict the member rather than the watch: another stream (after re-authenticating,
# for the token ones) will do. In practice etcd ends the whole stream on leader loss (v3rpc
# interceptor.go monitorLeader), which reaches us as on_stream_down; these catch it per watcher.
_RECONNECT_REASONS: Final = ("no leader", "invalid auth token", "revision of auth store is old")


class LocalProtocolError(Exception):
    """A transition the machine has no entry for: a bug in the mux or in the shell driving it."""


class WatchFilter(enum.IntEnum):
    """Server-side event filters (etcd ``WatchCreateRequest.FilterType``)."""

    NOPUT = 0
    NODELETE = 1


@attrs.frozen(kw_only=True)
class WatchSpec:
    """What a watcher watches: the fields of etcd's ``WatchCreateRequest`` (``fragment`` is always on).

    Attributes:
        key: the key, or the start of the range.
        range_end: the end of the range (exclusive); empty for the single key ``key``.
        start_revision: the first revision to deliver; 0 means from when the watch is established.
        prev_kv: whether events carry the previous key-value.
        filters: event types the server leaves out.
        progress_notify: whether the server sends periodic progress notifications for this watcher.
    """

    key: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    range_end: bytes = attrs.field(default=b"", validator=attrs.validators.instance_of(bytes))
    start_revision: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    prev_kv: bool = False
    filters: tuple[WatchFilter, ...] = ()
    progress_notify: bool = False


@attrs.frozen(kw_only=True)
class WatchResponseIn:
    """One etcd ``WatchResponse`` as the shell decodes it (the mux's only input from the wire)."""

    watch_id: int
    header: ResponseHeader
    events: tuple[Event, ...] = ()
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    fragment: bool = False


@attrs.frozen(kw_only=True)
class SendCreate:
    """Send a ``WatchCreateRequest`` with these fields."""

    watch_id: int
    key: bytes
    range_end: bytes
    start_revision: int
    prev_kv: bool
    filters: tuple[WatchFilter, ...]
    progress_notify: bool
    fragment: bool = True


@attrs.frozen
class SendCancel:
    """Send a ``WatchCancelRequest`` for ``watch_id``."""

    watch_id: int


@attrs.frozen
class SendProgressRequest:
    """Send a ``WatchProgressRequest``."""


@attrs.frozen
class Deliver:
    """Put ``response`` on ``watcher``'s channel: events of one etcd response, or an empty bookmark."""

    watcher: Watcher
    response: WatchResponse


@attrs.frozen
class Established:
    """``watcher`` is established: it will deliver every event with ``mod_revision > revision``.

    Emitted only for a watcher whose consumer asked (:meth:`WatchMux.request_established`), once.
    """

    watcher: Watcher
    revision: int


@attrs.frozen(kw_only=True)
class WatcherFailed:
    """``watcher`` is over: compacted (``compact_revision > 0``) or refused/cancelled (``reason``)."""

    watcher: Watcher
    compact_revision: int = 0
    reason: str = ""


@attrs.frozen
class Reconnect:
    """This member is unusable; the mux already treats the stream as down. Open one elsewhere."""

    reason: str


WatchAction: TypeAlias = (
    SendCreate | SendCancel | SendProgressRequest | Deliver | Established | WatcherFailed | Reconnect
)


class WatcherState(enum.Enum):
    """Where one watcher is in its life; see ``_TRANSITIONS``."""

    PENDING_SEND = "pending send"  # waits for a stream to send its create on
    CREATING = "creating"  # create sent, ``created`` not yet received
    ACTIVE = "active"  # created on the current stream: its events flow
    PAUSING = "pausing"  # paused while creating: cancel as soon as ``created`` names its id
    PAUSED = "paused"  # no server-side watch; resumes from next_revision
    CANCELLING = "cancelling"  # removed while creating: cancel as soon as ``created`` names its id
    FAILED = "failed"  # the server ended it for good; the consumer still has to remove it
    CLOSED = "closed"  # gone


class _In(enum.Enum):
    SEND_CREATE = enum.auto()
    CREATED = enum.auto()
    FAIL = enum.auto()
    STREAM_DOWN = enum.auto()
    PAUSE = enum.auto()
    RESUME = enum.auto()
    REMOVE = enum.auto()


_S = WatcherState

# The per-watcher machine. Anything not in this map is invalid and raises LocalProtocolError. Actions
# (what to send or deliver) are chosen by the WatchMux methods; this table only says where a watcher
# may go, so every state change is visible in one place (h2 `_transitions`, h11 `_state.py`).
_TRANSITIONS: Final[dict[tuple[WatcherState, _In], WatcherState]] = {
    # A create goes out only for a watcher waiting for one.
    (_S.PENDING_SEND, _In.SEND_CREATE): _S.CREATING,
    # Why PAUSING and CANCELLING exist: a cancel must name the server's id, and a server that ignores
    # client-assigned ids (the gRPC proxy numbers its own) only reveals it in `created`. So a watcher
    # paused or removed mid-create is cancelled when that arrives.
    (_S.CREATING, _In.CREATED): _S.ACTIVE,
    (_S.PAUSING, _In.CREATED): _S.PAUSED,
    (_S.CANCELLING, _In.CREATED): _S.CLOSED,
    # The server ended the watch (refused create, compaction, permission); a removed one just goes.
    (_S.CREATING, _In.FAIL): _S.FAILED,
    (_S.ACTIVE, _In.FAIL): _S.FAILED,
    (_S.PAUSING, _In.FAIL): _S.FAILED,
    (_S.CANCELLING, _In.FAIL): _S.CLOSED,
    # A broken stream voids every watch id but loses nothing: next_revision stays, creates go out again.
    (_S.CREATING, _In.STREAM_DOWN): _S.PENDING_SEND,
    (_S.ACTIVE, _In.STREAM_DOWN): _S.PENDING_SEND,
    (_S.PAUSING, _In.STREAM_DOWN): _S.PAUSED,
    (_S.PAUSED, _In.STREAM_DOWN): _S.PAUSED,
    (_S.CANCELLING, _In.STREAM_DOWN): _S.CLOSED,
    # Backpressure. Pausing twice, or resuming what is not paused, is a no-op so that the shell can
    # call them from its channel bookkeeping without tracking our state; likewise after the end.
    (_S.PENDING_SEND, _In.PAUSE): _S.PAUSED,
    (_S.CREATING, _In.PAUSE): _S.PAUSING,
    (_S.ACTIVE, _In.PAUSE): _S.PAUSED,
    (_S.PAUSING, _In.PAUSE): _S.PAUSING,
    (_S.PAUSED, _In.PAUSE): _S.PAUSED,
    (_S.PAUSED, _In.RESUME): _S.PENDING_SEND,
    (_S.PAUSING, _In.RESUME): _S.CREATING,  # the create is still in flight: just keep it
    (_S.PENDING_SEND, _In.RESUME): _S.PENDING_SEND,
    (_S.CREATING, _In.RESUME): _S.CREATING,
    (_S.ACTIVE, _In.RESUME): _S.ACTIVE,
    **{(s, i): s for s in (_S.CANCELLING, _S.FAILED, _S.CLOSED) for i in (_In.PAUSE, _In.RESUME)},
    # The consumer closed it. Removing twice is harmless (a consumer's close is idempotent).
    (_S.PENDING_SEND, _In.REMOVE): _S.CLOSED,
    (_S.CREATING, _In.REMOVE): _S.CANCELLING,
    (_S.ACTIVE, _In.REMOVE): _S.CLOSED,
    (_S.PAUSING, _In.REMOVE): _S.CANCELLING,
    (_S.PAUSED, _In.REMOVE): _S.CLOSED,
    (_S.CANCELLING, _In.REMOVE): _S.CANCELLING,
    (_S.FAILED, _In.REMOVE): _S.CLOSED,
    (_S.CLOSED, _In.REMOVE): _S.CLOSED,
}


class StreamState(enum.Enum):
    """Whether the mux has a stream to send on."""

    DOWN = "down"
    UP = "up"


# Opening a stream over an open one is a shell bug. Going down twice is not: after emitting Reconnect
# the mux is already down when the shell reports the stream it closed.
_STREAM_TRANSITIONS: Final[dict[tuple[StreamState, StreamState], StreamState]] = {
    (StreamState.DOWN, StreamState.UP): StreamState.UP,
    (StreamState.UP, StreamState.DOWN): StreamState.DOWN,
    (StreamState.DOWN, StreamState.DOWN): StreamState.DOWN,
}


@final
@attrs.define(eq=False, repr=False)
class Watcher:
    """One watcher: an identity handle the shell keys its channel on. Read its fields, never set them.

    Attributes:
        spec: what it watches.
        state: where it is in its life.
        next_revision: the first revision not yet delivered (0: a start-0 watch not yet established).
        watch_id: its id on the current stream, 0 when it has none.
        established_revision: ``None`` until etcd first confirmed its create; then the revision
            after which it delivers every event (its start revision - 1, or for start 0 the
            ``created`` header's revision).
    """

    spec: WatchSpec
    next_revision: int
    state: WatcherState = WatcherState.PENDING_SEND
    watch_id: int = 0
    # The client-assigned id of its last create: orders it against progress requests.
    create_seq: int = 0
    # Whether its consumer asked for a progress notification it has not received yet.
    wants_progress: bool = False
    established_revision: int | None = None
    # Whether its consumer waits for an Established action.
    wants_established: bool = False
    fragments: list[Event] = attrs.field(factory=list)

    def _go(self, event: _In) -> WatcherState:
        """Apply ``event`` via ``_TRANSITIONS``; return the state it left."""
        old = self.state
        new = _TRANSITIONS.get((old, event))
        if new is None:
            raise LocalProtocolError(f"watcher in state {old.name} cannot take {event.name}")
        self.state = new
        return old

    def __repr__(self) -> str:
        return (
            f"<Watcher at {id(self):#x}, {self.state.name}, key={self.spec.key!r}, "
            f"watch_id={self.watch_id}, next_revision={self.next_revision}>"
        )


@attrs.frozen(kw_only=True)
class WatchMuxStatistics:
    """A snapshot of the mux (trio ``statistics()`` style).

    Attributes:
        watchers: watchers not yet removed or failed.
        pending_creates: of those, how many are not yet established (not sent, or awaiting ``created``).
        active: how many are established on the current stream.
        paused: how many are paused (or pausing) by backpressure.
        stream_up: whether a stream is open.
    """

    watchers: int
    pending_creates: int
    active: int
    paused: int
    stream_up: bool


@final
@attrs.define(eq=False, repr=False)
class WatchMux:
    """All watchers of one connection over one Watch stream, as a sans-IO state machine.

    Example::

        mux = WatchMux()
        w, _ = mux.add(WatchSpec(key=b"a", start_revision=5))
        [create] = mux.on_stream_up()            # SendCreate(watch_id=1, start_revision=5, ...)
        mux.on_response(WatchResponseIn(watch_id=1, created=True, header=hdr))
        [deliver] = mux.on_response(resp_with_events)
        assert deliver.watcher is w
    """

    # Watchers not yet removed or failed, in the order they were added (creates go out in that order).
    _watchers: dict[Watcher, None] = attrs.field(factory=dict, init=False)
    _stream: StreamState = attrs.field(default=StreamState.DOWN, init=False)
    _progress_all_ordered: bool = attrs.field(default=False, init=False)
    # Client-assigned watch ids count up across streams, so a stale id can never match a new watcher.
    _next_id: int = attrs.field(default=1, init=False)
    # Creates awaiting `created`, oldest first, by the id we sent. Why pipelined (all creates go out at
    # once) when Go sends one at a time: etcd answers creates strictly in request order on its control
    # channel (v3rpc/watch.go recvLoop → ctrlStream, FIFO), so the oldest entry here is always the one a
    # `created` answers, even for a refusal, which carries watch_id -1. Serial creates (Go) are what
    # server-assigned ids need; ours need not wait, and re-create N watchers in one round trip, not N.
    _creating: dict[int, Watcher] = attrs.field(factory=dict, init=False)
    # Established watchers on the current stream, by the server's watch id.
    _active: dict[int, Watcher] = attrs.field(factory=dict, init=False)
    # The last create id sent before the outstanding progress request, or None when none is out.
    _progress_marker: int | None = attrs.field(default=None, init=False)

    # ----- inputs from the consumer side -----

    def add(self, spec: WatchSpec) -> tuple[Watcher, list[WatchAction]]:
        """A new watcher; its create goes out now if a stream is up, else on the next one."""
        watcher = Watcher(spec, next_revision=spec.start_revision)
        self._watchers[watcher] = None
        return watcher, self._send_create(watcher)

    def remove(self, watcher: Watcher) -> list[WatchAction]:
        """The consumer closed ``watcher``: cancel its server-side watch (now, or once it is created)."""
        old = watcher._go(_In.REMOVE)
        watcher.fragments.clear()
        if watcher.state is _S.CLOSED:
            self._watchers.pop(watcher, None)
        if old is _S.ACTIVE:
            del self._active[watcher.watch_id]
            return [SendCancel(watcher.watch_id)]
        return []

    def pause(self, watcher: Watcher) -> list[WatchAction]:
        """Backpressure: ``watcher``'s channel is full. Cancel its server-side watch, keep its revision."""
        old = watcher._go(_In.PAUSE)
        if old is _S.ACTIVE:
            del self._active[watcher.watch_id]
            watcher.fragments.clear()
            return [SendCancel(watcher.watch_id)]
        return []

    def resume(self, watcher: Watcher) -> list[WatchAction]:
        """``watcher``'s channel has room again: re-create it from its next revision (history replay)."""
        if watcher._go(_In.RESUME) is _S.PAUSED:
            return self._send_create(watcher)
        return []

    def request_progress(self, watcher: Watcher) -> list[WatchAction]:
        """``watcher``'s consumer wants a bookmark: an empty response as of the current revision.

        The stream-wide answer (watch_id -1) goes to every established watcher whose consumer asked,
        once each however often it asked; watchers that did not ask get nothing (they may have their
        own ``progress_notify``). The answer covers a watcher whose create went out before the request
        (etcd answers for the watchers it has then) and that is established when the answer arrives
        (etcd holds back a new watcher's events until its ``created`` is out, but not the -1 answer,
        and a later ``created`` may overtake it). So the request goes out once an asking watcher is
        established, and again while an asking watcher is left uncovered.
        """
        watcher.wants_progress = True
        return self._request_progress_if_needed()

    def request_established(self, watcher: Watcher) -> list[WatchAction]:
        """``watcher``'s consumer waits until etcd has confirmed its create.

        Returns :class:`Established` at once if it already is; otherwise :meth:`on_response` emits it
        with the ``created`` that confirms it (a stream break before that only delays it).
        """
        if watcher.established_revision is not None:
            return [Established(watcher, watcher.established_revision)]
        watcher.wants_established = True
        return []

    def statistics(self) -> WatchMuxStatistics:
        """Counts of watchers by state."""
        states = [w.state for w in self._watchers]
        return WatchMuxStatistics(
            watchers=len(states),
            pending_creates=sum(s in (_S.PENDING_SEND, _S.CREATING) for s in states),
            active=states.count(_S.ACTIVE),
            paused=sum(s in (_S.PAUSED, _S.PAUSING) for s in states),
            stream_up=self._stream is StreamState.UP,
        )

    # ----- inputs from the stream side -----

    def on_stream_up(self, *, progress_all_ordered: bool = False) -> list[WatchAction]:
        """A fresh stream is open: (re)create every waiting watcher from its next revision.

        Args:
            progress_all_ordered: whether this member sends stream-wide progress notifications in
                order with the events (etcd ≥ 3.4.25 / 3.5.8, commit 90e4d04c8 for etcd #15220). Only
                then does one advance next revisions. Before that fix etcd answered a progress request
                at once from its control channel with the current revision, racing events still
                queued; trusting it would drop those events as "already covered". Without the flag
                the answer is still delivered as a bookmark, with etcd's own caveat, but moves
                nothing.

        Raises:
            LocalProtocolError: a stream is already up.
        """
        self._stream = self._stream_go(StreamState.UP)
        self._progress_all_ordered = progress_all_ordered
        actions: list[WatchAction] = []
        for watcher in list(self._watchers):
            if watcher.state is _S.PENDING_SEND:
                actions += self._send_create(watcher)
        return actions

    def on_stream_down(self) -> list[WatchAction]:
        """The stream (or its connection) broke: every watch id is void; nothing is lost.

        Watchers wait for the next :meth:`on_stream_up`. Idempotent: after :class:`Reconnect` the mux
        is already down.
        """
        self._go_down()
        return []

    def on_response(self, response: WatchResponseIn) -> list[WatchAction]:
        """One response read from the current stream. Ignored while the stream is down."""
        if self._stream is StreamState.DOWN:
            return []
        if response.created:
            return self._on_created(response)
        if response.watch_id == INVALID_WATCH_ID:
            return self._on_progress_all(response)
        watcher = self._active.get(response.watch_id)
        if watcher is None:
            # Unknown, cancelled, paused, or the answer to our own cancel: nothing to do.
            return []
        if response.canceled:
            return self._on_ended(watcher, response)
        if response.fragment:
            watcher.fragments.extend(response.events)
            return []
        if response.events or watcher.fragments:
            return self._deliver_events(watcher, response)
        # A per-watcher progress notification: sent only while the watcher is synced, after its events.
        watcher.next_revision = max(watcher.next_revision, response.header.revision + 1)
        return [Deliver(watcher, WatchResponse(header=response.header))]

    # ----- internals -----

    def _stream_go(self, to: StreamState) -> StreamState:
        new = _STREAM_TRANSITIONS.get((self._stream, to))
        if new is None:
            raise LocalProtocolError(f"stream is {self._stream.name}, cannot go {to.name}")
        return new

    def _go_down(self) -> None:
        was, self._stream = self._stream, self._stream_go(StreamState.DOWN)
        if was is StreamState.DOWN:
            return
        for watcher in list(self._watchers):
            watcher._go(_In.STREAM_DOWN)
            watcher.watch_id = 0
            watcher.fragments.clear()
            if watcher.state is _S.CLOSED:
                del self._watchers[watcher]
        self._creating.clear()
        self._active.clear()
        self._progress_marker = None

    def _send_create(self, watcher: Watcher) -> list[WatchAction]:
        """Create ``watcher`` on the current stream, if there is one."""
        if self._stream is StreamState.DOWN:
            return []
        watcher._go(_In.SEND_CREATE)
        watch_id, self._next_id = self._next_id, self._next_id + 1
        watcher.watch_id = watcher.create_seq = watch_id
        self._creating[watch_id] = watcher
        spec = watcher.spec
        return [
            SendCreate(
                watch_id=watch_id,
                key=spec.key,
                range_end=spec.range_end,
                start_revision=watcher.next_revision,
                prev_kv=spec.prev_kv,
                filters=spec.filters,
                progress_notify=spec.progress_notify,
            )
        ]

    def _on_created(self, response: WatchResponseIn) -> list[WatchAction]:
        if not self._creating:
            return []  # a `created` we did not ask for
        watch_id = next(iter(self._creating))
        watcher = self._creating.pop(watch_id)
        if response.canceled:
            # A refused create (etcd sends created+canceled with watch_id -1, e.g. permission denied).
            return self._on_ended(watcher, response)
        # etcd echoes our id; a server that numbers its own (the gRPC proxy) tells us its id here.
        watcher.watch_id = watch_id if response.watch_id == INVALID_WATCH_ID else response.watch_id
        if watcher.next_revision == 0:
            watcher.next_revision = response.header.revision + 1  # start 0: established now
        actions: list[WatchAction] = []
        if watcher.established_revision is None:
            # The first `created`: no event can have been delivered yet (only active watchers get any).
            watcher.established_revision = watcher.next_revision - 1
            if watcher.wants_established:
                watcher.wants_established = False
                actions.append(Established(watcher, watcher.established_revision))
        watcher._go(_In.CREATED)
        if watcher.state is _S.ACTIVE:
            self._active[watcher.watch_id] = watcher
            return actions + self._request_progress_if_needed()
        # Paused or removed while its create was in flight: now we can name it.
        if watcher.state is _S.CLOSED:
            del self._watchers[watcher]
            return [SendCancel(watcher.watch_id)]  # its consumer is gone: nobody waits
        return [*actions, SendCancel(watcher.watch_id)]

    def _on_ended(self, watcher: Watcher, response: WatchResponseIn) -> list[WatchAction]:
        """The server refused or cancelled ``watcher``'s watch."""
        reason = response.cancel_reason
        if response.compact_revision == 0 and any(r in reason for r in _RECONNECT_REASONS):
            self._go_down()
            return [Reconnect(reason)]
        self._active.pop(watcher.watch_id, None)
        watcher._go(_In.FAIL)
        watcher.fragments.clear()
        del self._watchers[watcher]
        # etcd 3.4 keeps a compacted watcher's entry on the stream until it is cancelled by id.
        cleanup: list[WatchAction] = []
        if response.compact_revision > 0 and response.watch_id != INVALID_WATCH_ID:
            cleanup.append(SendCancel(response.watch_id))
        if watcher.state is _S.CLOSED:
            return cleanup  # its consumer is gone already
        if response.compact_revision == 0 and not reason:
            reason = "watch canceled by the server"
        failed = WatcherFailed(watcher=watcher, compact_revision=response.compact_revision, reason=reason)
        return [*cleanup, failed]

    def _deliver_events(self, watcher: Watcher, response: WatchResponseIn) -> list[WatchAction]:
        """A complete response (fragments reassembled): deliver the events not delivered before.

        etcd sends events in revision order, so when the first one is new they all are: the common
        case hands the response's own tuple on without filtering or copying it.
        """
        events = response.events
        if watcher.fragments:
            events = (*watcher.fragments, *events)
            watcher.fragments.clear()
        next_revision = watcher.next_revision
        if events[0].kv.mod_revision < next_revision:
            # A replay (after a re-create) of what was delivered already, in whole or in part.
            events = tuple(e for e in events if e.kv.mod_revision >= next_revision)
            if not events:
                return []
        watcher.next_revision = events[-1].kv.mod_revision + 1
        return [Deliver(watcher, WatchResponse(header=response.header, events=events))]

    def _request_progress_if_needed(self) -> list[WatchAction]:
        # One request at a time: etcd ≥ 3.4.25 coalesces requests while one is deferred, so a second
        # could go unanswered and we would wait for it forever.
        if self._progress_marker is not None:
            return []
        if any(w.wants_progress for w in self._active.values()):
            self._progress_marker = self._next_id - 1
            return [SendProgressRequest()]
        return []

    def _on_progress_all(self, response: WatchResponseIn) -> list[WatchAction]:
        """A stream-wide progress notification, answering our progress request."""
        marker = self._progress_marker
        if marker is None or response.canceled or response.events:
            return []  # not an answer to a request of ours: nothing to interpret
        self._progress_marker = None
        actions: list[WatchAction] = []
        bookmark = WatchResponse(header=response.header)
        for watcher in self._active.values():
            if watcher.create_seq > marker:
                continue  # created after the request: the answer says nothing about it
            if self._progress_all_ordered:
                watcher.next_revision = max(watcher.next_revision, response.header.revision + 1)
            if watcher.wants_progress:
                watcher.wants_progress = False
                actions.append(Deliver(watcher, bookmark))
        return actions + self._request_progress_if_needed()
