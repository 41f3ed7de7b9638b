"""Checkers: pure functions over recorded histories (shared/notes/fault-injection.md §3).

Every checker takes what a workload recorded (client-side records with ``time.monotonic()`` timestamps,
comparable across processes, and etcd revisions) plus, where it needs one, the server's own history of the
keys involved (replayed after the run), and returns a :class:`Report`: the violations found (empty means the
property held) and counts worth printing. None of them does I/O; ``test_checkers.py`` feeds each one a
hand-made violation to prove it can fail.

Properties:

* :func:`check_fenced_register` (Mutex with fencing): tokens of successive committed writes never go down;
  no update is lost (the counter goes up by exactly one per committed write); every acknowledged write is in
  the server history at its revision; no rejected write is. Real-time overlaps of critical sections are only
  counted (they are expected under pauses; fencing is what makes them harmless).
* :func:`check_election`: one candidate per leader revision; proclamations in revision order have
  non-decreasing terms and come from that term's winner; every observer's sequence is ordered and shows only
  values its term's winner wrote; failovers within a bound.
* :func:`check_semaphore`: at every revision where a holder did guarded work, its key is among the ``limit``
  oldest (replayed); at no revision more than ``limit`` holders were working.
* :func:`check_double_barrier`: nobody passes enter before the last member of its round invoked enter, nor
  leave before the last member invoked leave; no round has more than ``count`` members.
* :func:`check_watch`: a watcher's events are ordered, unique, atomic per revision, and equal the server
  history from its start revision on (no gap, duplicate or reorder).
* :func:`check_bank`: every audited snapshot sums to the total and equals the replayed state at its
  revision; every revision's changes sum to zero.
* :func:`check_recovery`: after each fault healed, progress resumed within a bound.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Mapping, Sequence

import attrs


@attrs.define
class Report:
    """What a checker found: ``violations`` (empty: the property held) and ``stats`` worth printing."""

    name: str
    violations: list[str] = attrs.field(factory=list)
    stats: dict[str, float] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def fail(self, message: str) -> None:
        self.violations.append(message)

    def summary(self) -> str:
        counts = ", ".join(f"{k}={v:g}" for k, v in self.stats.items())
        verdict = "OK" if self.ok else f"{len(self.violations)} VIOLATION(S)"
        shown = "".join(f"\n  - {v}" for v in self.violations[:10])
        more = f"\n  ... and {len(self.violations) - 10} more" if len(self.violations) > 10 else ""
        return f"{self.name}: {verdict} ({counts}){shown}{more}"


# ---------------------------------------------------------------------------------------------------------
# Mutex with fencing: a counter register written under the lock


@attrs.frozen
class RegisterWrite:
    """One write of the counter under the lock, as the writer recorded it.

    ``value`` is unique (``b"<count>:<writer>:<seq>"``), so it identifies the write in the server history.
    ``status``: ``ok`` (acknowledged), ``fail`` (definitely not applied: the guard rejected it), ``info``
    (indeterminate).
    """

    process: str
    token: int
    value: bytes
    status: str
    revision: int = 0  # of the acknowledgement, for ok writes


@attrs.frozen
class CriticalSection:
    """A holder's critical section in real time: from acquire returning to release being invoked."""

    process: str
    token: int
    start: float
    end: float


def count_of(value: bytes) -> int:
    """The counter value in a register value ``b"<count>:<writer>:<seq>"``."""
    return int(value.split(b":", 1)[0])


def check_fenced_register(
    writes: Sequence[RegisterWrite],
    committed: Sequence[tuple[int, bytes]],
    *,
    initial: int = 0,
    sections: Sequence[CriticalSection] = (),
    name: str = "mutex",
) -> Report:
    """Check a counter incremented under a lock (``committed``: the server's ``(revision, value)`` history).

    Violations: a committed count that is not the previous one plus one (a lost or doubled update); a
    committed write whose token is lower than the previous committed write's (token order); an acknowledged
    write missing from the history or at another revision; a rejected (``fail``) write present in it; a
    committed value nobody wrote.
    """
    report = Report(name)
    by_value = {w.value: w for w in writes}
    previous_count, previous_token = initial, 0
    lost = inversions = 0
    for revision, value in committed:
        write = by_value.get(value)
        if write is None:
            report.fail(f"revision {revision}: value {value!r} was written by nobody in the history")
            continue
        count = count_of(value)
        if count != previous_count + 1:
            lost += 1
            report.fail(
                f"revision {revision}: lost update: {write.process} wrote count {count} after count "
                f"{previous_count} (token {write.token})"
            )
        if write.token < previous_token:
            inversions += 1
            report.fail(
                f"revision {revision}: token order: {write.process}'s token {write.token} came after "
                f"token {previous_token}"
            )
        previous_count, previous_token = count, max(previous_token, write.token)
    at_revision = {value: revision for revision, value in committed}
    for write in writes:
        if write.status == "ok" and at_revision.get(write.value) != write.revision:
            report.fail(
                f"acknowledged write {write.value!r} by {write.process} at revision {write.revision} "
                f"is {'missing from' if write.value not in at_revision else 'elsewhere in'} the history"
            )
        if write.status == "fail" and write.value in at_revision:
            report.fail(f"rejected write {write.value!r} by {write.process} is in the history")
    if committed and count_of(committed[-1][1]) != initial + len(committed):
        report.fail(
            f"final count {count_of(committed[-1][1])} != {initial} + {len(committed)} committed writes"
        )
    report.stats.update(
        committed=len(committed),
        acknowledged=sum(w.status == "ok" for w in writes),
        rejected_by_fence=sum(w.status == "fail" for w in writes),
        indeterminate=sum(w.status == "info" for w in writes),
        lost_updates=lost,
        token_inversions=inversions,
        overlapping_sections=count_overlaps(sections),
    )
    return report


def count_overlaps(sections: Sequence[CriticalSection]) -> int:
    """Pairs of critical sections of different holders that overlapped in real time (reported, not checked)."""
    ordered = sorted(sections, key=lambda s: s.start)
    overlaps = 0
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.start >= a.end:
                break
            if b.process != a.process or b.token != a.token:
                overlaps += 1
    return overlaps


# ---------------------------------------------------------------------------------------------------------
# Election


@attrs.frozen
class Win:
    """A candidate's campaign returned: it leads with leader revision ``term`` (its key's create revision)."""

    process: str
    key: bytes
    term: int


@attrs.frozen
class Proclaim:
    """A leader's write guarded by its leadership (``value`` starts with ``b"<process>:"``)."""

    process: str
    term: int
    value: bytes
    status: str  # ok / fail / info
    revision: int = 0


@attrs.frozen
class Observed:
    """One leader an observer reported: ``term`` is the leader key's create revision."""

    key: bytes
    term: int
    mod_revision: int
    value: bytes


def writer_of(value: bytes) -> str:
    """The process that wrote a value ``b"<process>:..."``."""
    return value.split(b":", 1)[0].decode()


def check_election(
    wins: Sequence[Win],
    proclaims: Sequence[Proclaim],
    observations: Mapping[str, Sequence[Observed]],
    *,
    failovers: Sequence[float] = (),
    failover_bound: float | None = None,
    name: str = "election",
) -> Report:
    """Check an election history (see the module docstring)."""
    report = Report(name)
    winners: dict[int, Win] = {}
    for win in wins:
        known = winners.setdefault(win.term, win)
        if (known.process, known.key) != (win.process, win.key):
            report.fail(f"two leaders for leader revision {win.term}: {known.process} and {win.process}")
    last_term = 0
    for p in sorted((p for p in proclaims if p.status == "ok"), key=lambda p: p.revision):
        if p.term < last_term:
            report.fail(f"proclaim at revision {p.revision} by {p.process} has term {p.term} < {last_term}")
        last_term = max(last_term, p.term)
        winner = winners.get(p.term)
        if winner is None or winner.process != p.process:
            report.fail(f"{p.process} proclaimed in term {p.term} it never won (winner: {winner})")
    for observer, seen in observations.items():
        for a, b in itertools.pairwise(seen):
            if b.term < a.term:
                report.fail(f"observer {observer}: leader revision went back from {a.term} to {b.term}")
            if b.term == a.term and b.mod_revision <= a.mod_revision:
                # Within one leadership, proclamations come in revision order. (A new leader's key can be
                # older than the last proclamation of the one before: it was created while waiting.)
                report.fail(
                    f"observer {observer}: term {a.term} went from revision {a.mod_revision} to {b.mod_revision}"
                )
        for o in seen:
            winner = winners.get(o.term)
            if winner is not None and writer_of(o.value) != winner.process:
                report.fail(
                    f"observer {observer}: term {o.term} shows {o.value!r}, not written by its leader "
                    f"{winner.process}"
                )
    for delay in failovers:
        if failover_bound is not None and delay > failover_bound:
            report.fail(f"failover took {delay:.2f} s > bound {failover_bound:.2f} s")
    report.stats.update(
        terms=len(winners),
        proclaims_ok=sum(p.status == "ok" for p in proclaims),
        proclaims_rejected=sum(p.status == "fail" for p in proclaims),
        observed=sum(len(s) for s in observations.values()),
        failovers=len(failovers),
    )
    if failovers:
        report.stats["max_failover_s"] = round(max(failovers), 3)
    return report


# ---------------------------------------------------------------------------------------------------------
# Semaphore


@attrs.frozen
class KeyEvent:
    """A server-side event on a recipe's prefix: ``type`` is ``"put"`` or ``"delete"``."""

    revision: int
    type: str
    key: bytes
    create_revision: int = 0


@attrs.frozen
class Claim:
    """A holder's guarded write at ``revision``, made while it believed it held the permit ``token``."""

    process: str
    key: bytes
    token: int
    revision: int


def check_semaphore(
    limit: int, events: Sequence[KeyEvent], claims: Sequence[Claim], *, name: str = "semaphore"
) -> Report:
    """Check that every claim's key ranked below ``limit`` at its revision, and that at most ``limit`` holders
    worked at any revision (replaying ``events``)."""
    report = Report(name)
    live: dict[bytes, int] = {}
    pending = sorted(claims, key=lambda c: c.revision)
    events_sorted = sorted(events, key=lambda e: e.revision)
    index = 0
    for claim in pending:
        while index < len(events_sorted) and events_sorted[index].revision <= claim.revision:
            event = events_sorted[index]
            if event.type == "put":
                live.setdefault(event.key, event.create_revision)
            else:
                live.pop(event.key, None)
            index += 1
        if live.get(claim.key) != claim.token:
            report.fail(
                f"revision {claim.revision}: {claim.process} worked under {claim.key!r}@{claim.token}, gone"
            )
            continue
        rank = sum(1 for rev in live.values() if rev < claim.token)
        if rank >= limit:
            report.fail(
                f"revision {claim.revision}: {claim.process} worked as holder #{rank + 1} of limit {limit}"
            )
    spans: dict[tuple[str, int], list[int]] = {}
    for claim in claims:
        span = spans.setdefault((claim.process, claim.token), [claim.revision, claim.revision])
        span[0], span[1] = min(span[0], claim.revision), max(span[1], claim.revision)
    edges = sorted(
        [(lo, 1) for lo, _ in spans.values()] + [(hi, -1) for _, hi in spans.values()],
        key=lambda e: (e[0], -e[1]),
    )
    active = peak = 0
    for revision, step in edges:
        active += step
        if active > limit:
            report.fail(f"revision {revision}: {active} holders were working (limit {limit})")
        peak = max(peak, active)
    report.stats.update(acquisitions=len(spans), claims=len(claims), peak_holders=peak)
    return report


# ---------------------------------------------------------------------------------------------------------
# DoubleBarrier


@attrs.frozen
class BarrierVisit:
    """One participant's pass through one round; ``None`` for a step it never took (it died)."""

    process: str
    round: int
    enter_invoke: float
    enter_return: float
    leave_invoke: float | None
    leave_return: float | None


def check_double_barrier(
    count: int, visits: Sequence[BarrierVisit], *, name: str = "double barrier"
) -> Report:
    """Nobody passes early (see the module docstring); at most ``count`` members per round."""
    report = Report(name)
    rounds: dict[int, list[BarrierVisit]] = collections.defaultdict(list)
    for visit in visits:
        rounds[visit.round].append(visit)
    for round_, members in sorted(rounds.items()):
        if len(members) > count:
            report.fail(f"round {round_} has {len(members)} members > count {count}")
        last_enter = max(v.enter_invoke for v in members)
        for v in members:
            if v.enter_return < last_enter:
                report.fail(
                    f"round {round_}: {v.process} passed enter {last_enter - v.enter_return:.3f} s before the "
                    "last member invoked enter"
                )
        leaving = [v for v in members if v.leave_invoke is not None]
        if len(leaving) == len(members):
            last_leave = max(v.leave_invoke for v in leaving if v.leave_invoke is not None)
            for v in leaving:
                if v.leave_return is not None and v.leave_return < last_leave:
                    report.fail(
                        f"round {round_}: {v.process} passed leave {last_leave - v.leave_return:.3f} s before the "
                        "last member invoked leave"
                    )
    report.stats.update(rounds=len(rounds), visits=len(visits))
    return report


# ---------------------------------------------------------------------------------------------------------
# Watch


@attrs.frozen
class WatchEvent:
    """One event: ``type`` is ``"put"`` or ``"delete"``."""

    revision: int
    key: bytes
    type: str
    value: bytes = b""


def check_watch(
    reference: Sequence[WatchEvent],
    responses: Sequence[Sequence[WatchEvent]],
    *,
    start: int,
    name: str = "watch",
) -> Report:
    """Check one watcher's ``responses`` (events grouped as delivered) against the server's ``reference``.

    Ordered (revisions never go down), unique (no ``(revision, key)`` twice), atomic (one revision is never
    split across responses), and reliable + resumable: the events equal the reference from ``start`` up to
    the reference's last revision, so nothing is missing, duplicated, reordered or invented.
    """
    report = Report(name)
    events = [e for response in responses for e in response]
    for a, b in itertools.pairwise(events):
        if b.revision < a.revision:
            report.fail(f"not ordered: revision {b.revision} after {a.revision}")
    seen = collections.Counter((e.revision, e.key) for e in events)
    for (revision, key), n in seen.items():
        if n > 1:
            report.fail(f"duplicate: {key!r} at revision {revision} delivered {n} times")
    delivered_in: dict[int, set[int]] = collections.defaultdict(set)
    for i, response in enumerate(responses):
        for e in response:
            delivered_in[e.revision].add(i)
    for revision, indices in sorted(delivered_in.items()):
        if len(indices) > 1:
            report.fail(f"not atomic: revision {revision} split across {len(indices)} responses")
    expected = [e for e in reference if e.revision >= start]
    if events != expected:
        missing = [e for e in expected if e not in set(events)]
        extra = [e for e in events if e not in set(expected)]
        where = next((i for i, (a, b) in enumerate(zip(events, expected, strict=False)) if a != b), None)
        report.fail(
            f"events differ from the server history: {len(events)} vs {len(expected)} expected, "
            f"{len(missing)} missing (first {missing[:1]}), {len(extra)} unexpected (first {extra[:1]}), "
            f"first difference at position {where}"
        )
    report.stats.update(events=len(events), responses=len(responses))
    return report


# ---------------------------------------------------------------------------------------------------------
# STM bank


@attrs.frozen
class Audit:
    """One consistent read of every account at ``revision``."""

    revision: int
    balances: Mapping[bytes, int]


def check_bank(
    total: int,
    initial: Mapping[bytes, int],
    audits: Sequence[Audit],
    changes: Sequence[tuple[int, bytes, int]],
    *,
    name: str = "bank",
) -> Report:
    """``changes``: the server's ``(revision, account, new balance)`` history after ``initial``."""
    report = Report(name)
    state = dict(initial)
    if sum(state.values()) != total:
        report.fail(f"initial balances sum to {sum(state.values())}, not {total}")
    snapshots: dict[int, dict[bytes, int]] = {}
    for revision, group in itertools.groupby(sorted(changes), key=lambda c: c[0]):
        delta = 0
        for _, account, balance in group:
            delta += balance - state.get(account, 0)
            state[account] = balance
        if delta != 0:
            report.fail(f"revision {revision}: transfer is not zero-sum (delta {delta})")
        snapshots[revision] = dict(state)
    revisions = sorted(snapshots)
    for audit in audits:
        if sum(audit.balances.values()) != total:
            report.fail(
                f"audit at revision {audit.revision} sums to {sum(audit.balances.values())}, not {total}"
            )
        earlier = [r for r in revisions if r <= audit.revision]
        replayed = snapshots[earlier[-1]] if earlier else dict(initial)
        if dict(audit.balances) != replayed:
            report.fail(f"audit at revision {audit.revision} differs from the replayed state")
    report.stats.update(audits=len(audits), transfers=len(snapshots))
    return report


# ---------------------------------------------------------------------------------------------------------
# Liveness after recovery


@attrs.frozen
class Recovery:
    """A fault healed at ``healed`` and progress (a successful operation) was next seen at ``progressed``."""

    fault: str
    healed: float
    progressed: float | None


def check_recovery(recoveries: Iterable[Recovery], *, bound: float, name: str = "recovery") -> Report:
    """Progress resumed within ``bound`` seconds after every heal."""
    report = Report(name)
    delays = []
    for r in recoveries:
        if r.progressed is None:
            report.fail(f"{r.fault}: no progress after the heal")
            continue
        delay = r.progressed - r.healed
        delays.append(delay)
        if delay > bound:
            report.fail(f"{r.fault}: progress resumed {delay:.2f} s after the heal (bound {bound} s)")
    report.stats.update(faults=len(delays))
    if delays:
        report.stats["max_recovery_s"] = round(max(delays), 3)
    return report
