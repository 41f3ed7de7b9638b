"""``etcdsync status PREFIX``: every lock, election, semaphore and RW lock under PREFIX, as a table.

What is recognised (the layouts of etcdsync's recipes, which are etcd's Go ``concurrency`` layouts):

- a **participant** is a key ``NAME/<hex lease id>`` (semaphores: optionally ``-<n>``) attached to
  that very lease; participants are grouped by NAME and ordered by create revision;
- **RW lock** participants are ``NAME/read/<hex lease>-<tag>`` and ``NAME/write/<hex lease>-<tag>``;
- a group is a **semaphore** when the key ``NAME`` itself holds a decimal limit with no lease;
- otherwise it is an **election** if any participant has a non-empty value (the proposal), else a
  **lock** (an election whose candidates all proposed empty values shows as a lock).

Holders are the first participant (locks, elections), the first ``limit`` (semaphores), or for an RW
lock the readers ahead of the first writer, or that writer. The rest wait, in this order.

etcd keeps no timestamps, so how long a participant has waited cannot be read from etcd. The table
shows its key's create revision and **AGE(REVS)**: how many revisions the store has advanced since
(writes anywhere in etcd, not seconds). With ``--watch``, **SEEN** adds a lower bound in seconds: how
long this status process has been seeing that key. TTL is the lease's remaining/granted seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import attrs
import trio

from ..client import Client, CompactedError, KeyValue
from ._connect import ConnectOptions, connect
from ._runtime import EXIT_OK, Interrupts, out

__all__ = ["CLEAR_SCREEN", "Group", "Snapshot", "classify", "read_snapshot", "render", "run_status"]

#: Cursor home, then clear the screen: what precedes every frame of ``status --watch``.
CLEAR_SCREEN = "\x1b[H\x1b[2J"

_RW = re.compile(rb"(?P<name>.+)/(?P<side>read|write)/(?P<lease>[0-9a-f]{1,16})-[0-9a-f]+", re.DOTALL)
_PARTICIPANT = re.compile(rb"(?P<name>.+)/(?P<lease>[0-9a-f]{1,16})(?:-[0-9]+)?", re.DOTALL)
_LIMIT = re.compile(rb"[1-9][0-9]{0,9}")
_MAX_VALUE = 40
#: Concurrent lease lookups.
_LEASE_LOOKUPS = 16


@attrs.define
class Group:
    """The participants of one lock, election, semaphore or RW lock, oldest first."""

    name: bytes
    participants: list[KeyValue] = attrs.Factory(list)
    sides: dict[bytes, str] = attrs.Factory(dict)  # RW lock: key -> "read" | "write"
    limit: int | None = None  # semaphores

    @property
    def kind(self) -> str:
        if self.sides:
            return "rwlock"
        if self.limit is not None:
            return f"semaphore({self.limit})"
        if any(kv.value for kv in self.participants):
            return "election"
        return "lock"

    def holders(self) -> int:
        """How many of the (ordered) participants hold it."""
        if self.sides:
            first_writer = next(
                (i for i, kv in enumerate(self.participants) if self.sides[kv.key] == "write"), None
            )
            if first_writer is None:
                return len(self.participants)
            return first_writer or 1
        return self.limit if self.limit is not None else 1


@attrs.frozen(kw_only=True)
class Snapshot:
    """What ``status`` read, at one revision."""

    prefix: bytes
    revision: int
    groups: Sequence[Group]
    ttls: Mapping[int, tuple[int, int]]  # lease -> (remaining, granted); remaining -1: gone
    others: int  # keys under the prefix that belong to no group


def classify(kvs: Iterable[KeyValue]) -> tuple[list[Group], int]:
    """Group participant keys by name (see the module docstring); return the groups by name and the
    number of other keys."""
    groups: dict[bytes, Group] = {}
    candidates: list[KeyValue] = []  # keys that may be a semaphore's limit
    for kv in kvs:
        rw = _RW.fullmatch(kv.key)
        match = rw or _PARTICIPANT.fullmatch(kv.key)
        if match is None or kv.lease == 0 or int(match["lease"], 16) != kv.lease:
            candidates.append(kv)
            continue
        group = groups.setdefault(match["name"], Group(match["name"]))
        group.participants.append(kv)
        if rw is not None:
            group.sides[kv.key] = rw["side"].decode()
    others = 0
    for kv in candidates:
        owner = groups.get(kv.key)
        if owner is not None and not owner.sides and kv.lease == 0 and _LIMIT.fullmatch(kv.value):
            owner.limit = int(kv.value)
        else:
            others += 1
    for group in groups.values():
        group.participants.sort(key=lambda kv: kv.create_revision)
    return sorted(groups.values(), key=lambda g: g.name), others


async def read_snapshot(client: Client, prefix: bytes) -> Snapshot:
    """Read everything under ``prefix`` at one revision, plus each group's limit key and each lease's TTL."""
    head = await client.range(prefix, prefix=True, count_only=True)
    revision = head.header.revision
    kvs = [kv async for kv in client.iter_range(prefix, revision=revision)]
    groups, others = classify(kvs)
    for group in groups:
        # A semaphore's limit key lies outside PREFIX when PREFIX is the semaphore's own "NAME/".
        if group.limit is None and not group.sides and not any(kv.value for kv in group.participants):
            kv = await client.get(group.name, revision=revision)
            if kv is not None and kv.lease == 0 and _LIMIT.fullmatch(kv.value):
                group.limit = int(kv.value)
    ttls: dict[int, tuple[int, int]] = {}
    limiter = trio.CapacityLimiter(_LEASE_LOOKUPS)

    async def lookup(lease: int) -> None:
        async with limiter:
            resp = await client.lease_time_to_live(lease)
        ttls[lease] = (resp.ttl, resp.granted_ttl)

    async with trio.open_nursery() as nursery:
        for lease in sorted({kv.lease for group in groups for kv in group.participants}):
            nursery.start_soon(lookup, lease)
    return Snapshot(prefix=prefix, revision=revision, groups=groups, ttls=ttls, others=others)


def _text(raw: bytes, limit: int | None = None) -> str:
    """Bytes for a table cell: UTF-8 with escapes for anything unprintable, optionally shortened."""
    text = raw.decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _ttl(ttls: Mapping[int, tuple[int, int]], lease: int) -> str:
    remaining, granted = ttls.get(lease, (-1, 0))
    return "expired" if remaining < 0 else f"{remaining}/{granted}s"


def render(snapshot: Snapshot, seen: Mapping[bytes, float] | None = None, now: float = 0.0) -> list[str]:
    """The table as lines. ``seen`` (``--watch``): key -> when this process first saw it."""
    prefix = _text(snapshot.prefix)
    lines = [f"{prefix} at revision {snapshot.revision}"]
    if not snapshot.groups:
        lines.append("no locks, elections or semaphores")
    else:
        header = ["NAME", "KIND", "POS", "STATE", "LEASE", "TTL", "CREATED", "AGE(REVS)"]
        if seen is not None:
            header.append("SEEN")
        header.append("VALUE")
        rows = [header]
        for group in snapshot.groups:
            holders = group.holders()
            for position, kv in enumerate(group.participants, 1):
                kind = f"rwlock({group.sides[kv.key]})" if group.sides else group.kind
                holding = "leader" if kind == "election" else "held"
                row = [
                    _text(group.name),
                    kind,
                    str(position),
                    holding if position <= holders else "waiting",
                    format(kv.lease, "x"),
                    _ttl(snapshot.ttls, kv.lease),
                    str(kv.create_revision),
                    str(snapshot.revision - kv.create_revision),
                ]
                if seen is not None:
                    row.append(f"{int(now - seen.get(kv.key, now))}s")
                row.append(_text(kv.value, _MAX_VALUE))
                rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines.append("")
        lines.extend(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
        )
    if snapshot.others:
        lines.append("")
        lines.append(
            f"({snapshot.others} other key{'s' if snapshot.others != 1 else ''} under {prefix} not shown)"
        )
    return lines


async def _next_change(client: Client, prefix: bytes, start: int) -> None:
    """Return at the first change under ``prefix`` from revision ``start`` on."""
    try:
        async with client.watch(prefix, prefix=True, start_revision=start) as events:
            async for resp in events:
                if resp.events:
                    return
    except CompactedError:
        return  # history is gone: redraw from a fresh read


async def run_status(
    connect_options: ConnectOptions,
    prefix: bytes,
    interrupts: Interrupts,
    *,
    watch: bool,
    interval: float,
) -> int:
    """Print the table once, or with ``watch`` redraw it on every change and every ``interval`` seconds."""
    async with connect(connect_options) as client:
        with interrupts.cancellable():
            if not watch:
                for line in render(await read_snapshot(client, prefix)):
                    out(line)
                return EXIT_OK
            interrupts.status_on_signal = EXIT_OK
            await _redraw_forever(client, prefix, interval)
    return interrupts.exit_status()


async def _redraw_forever(client: Client, prefix: bytes, interval: float) -> None:
    seen: dict[bytes, tuple[int, float]] = {}  # key -> (create revision, when first seen)
    while True:
        try:
            snapshot = await read_snapshot(client, prefix)
        except CompactedError:
            continue  # compacted between the count and the listing: read again
        now = trio.current_time()
        current = {kv.key: kv.create_revision for g in snapshot.groups for kv in g.participants}
        seen = {
            key: seen[key] if key in seen and seen[key][0] == rev else (rev, now)
            for key, rev in current.items()
        }
        frame = render(snapshot, {key: first for key, (_, first) in seen.items()}, now)
        frame += ["", f"watching: redrawn on every change and every {interval:g} s; Ctrl-C to stop"]
        out(CLEAR_SCREEN + "\n".join(frame))
        with trio.move_on_after(interval):
            await _next_change(client, prefix, snapshot.revision + 1)
