"""Each checker accepts a correct history and catches a hand-made violation: a checker that cannot fail is
worthless (shared/notes/fault-injection.md §3.i). Synchronous; no etcd."""

from __future__ import annotations

import pytest

from .checkers import (
    Audit,
    BarrierVisit,
    Claim,
    CriticalSection,
    KeyEvent,
    Observed,
    Proclaim,
    Recovery,
    RegisterWrite,
    WatchEvent,
    Win,
    check_bank,
    check_double_barrier,
    check_election,
    check_fenced_register,
    check_recovery,
    check_semaphore,
    check_watch,
    count_overlaps,
)

# -- Mutex / fenced register ---------------------------------------------------------------------------------


def _writes() -> list[RegisterWrite]:
    return [
        RegisterWrite("a", 10, b"1:a:0", "ok", 11),
        RegisterWrite("b", 12, b"2:b:0", "ok", 13),
        RegisterWrite("a", 14, b"3:a:1", "info"),
    ]


GOOD_REGISTER = [(11, b"1:a:0"), (13, b"2:b:0"), (15, b"3:a:1")]


def test_register_accepts_a_correct_history() -> None:
    report = check_fenced_register(_writes(), GOOD_REGISTER)
    assert report.ok, report.summary()
    assert report.stats["committed"] == 3 and report.stats["indeterminate"] == 1


def test_register_catches_a_lost_update() -> None:
    # A paused holder read count 1, woke up after b's write, and wrote count 2 again, unfenced.
    writes = [*_writes()[:2], RegisterWrite("a", 10, b"2:a:1", "ok", 14)]
    report = check_fenced_register(writes, [(11, b"1:a:0"), (13, b"2:b:0"), (14, b"2:a:1")])
    assert any("lost update" in v for v in report.violations)
    assert any("token order" in v for v in report.violations)  # its token 10 came after b's 12
    assert report.stats["lost_updates"] == 1 and report.stats["token_inversions"] == 1


def test_register_catches_a_vanished_acknowledged_write() -> None:
    report = check_fenced_register(_writes(), [(11, b"1:a:0")])
    assert any("acknowledged write b'2:b:0'" in v for v in report.violations)


def test_register_catches_a_rejected_write_that_landed() -> None:
    writes = [*_writes()[:2], RegisterWrite("a", 10, b"3:a:1", "fail")]
    report = check_fenced_register(writes, [*GOOD_REGISTER[:2], (15, b"3:a:1")])
    assert any("rejected write" in v for v in report.violations)


def test_register_catches_an_invented_value() -> None:
    report = check_fenced_register(_writes(), [*GOOD_REGISTER, (17, b"4:zz:9")])
    assert any("written by nobody" in v for v in report.violations)


def test_overlaps_are_counted_across_holders_only() -> None:
    sections = [
        CriticalSection("a", 1, 0.0, 2.0),
        CriticalSection("b", 2, 1.0, 3.0),  # overlaps a
        CriticalSection("a", 3, 3.5, 4.0),
    ]
    assert count_overlaps(sections) == 1


# -- Election ------------------------------------------------------------------------------------------------

WINS = [Win("p1", b"e/1", 5), Win("p2", b"e/2", 9)]
PROCLAIMS = [
    Proclaim("p1", 5, b"p1:1", "ok", 6),
    Proclaim("p1", 5, b"p1:2", "fail"),
    Proclaim("p2", 9, b"p2:1", "ok", 10),
]
OBSERVED = {
    "o1": [Observed(b"e/1", 5, 6, b"p1:1"), Observed(b"e/2", 9, 10, b"p2:1")],
    "o2": [Observed(b"e/2", 9, 10, b"p2:1")],
}


def test_election_accepts_a_correct_history() -> None:
    report = check_election(WINS, PROCLAIMS, OBSERVED, failovers=[1.2], failover_bound=3.0)
    assert report.ok, report.summary()


def test_election_catches_two_leaders_for_one_revision() -> None:
    report = check_election([*WINS, Win("p3", b"e/3", 9)], PROCLAIMS, OBSERVED)
    assert any("two leaders for leader revision 9" in v for v in report.violations)


def test_election_catches_a_stale_proclaim() -> None:
    stale = Proclaim("p1", 5, b"p1:3", "ok", 11)  # the old leader's write landed after p2 took over
    report = check_election(WINS, [*PROCLAIMS, stale], OBSERVED)
    assert any("has term 5 < 9" in v for v in report.violations)


def test_election_catches_an_observer_going_back() -> None:
    backwards = {"o1": [OBSERVED["o1"][1], Observed(b"e/1", 5, 11, b"p1:1")]}
    report = check_election(WINS, PROCLAIMS, backwards)
    assert any("went back from 9 to 5" in v for v in report.violations)


def test_election_catches_a_reordered_proclamation() -> None:
    reordered = {"o1": [Observed(b"e/2", 9, 12, b"p2:2"), Observed(b"e/2", 9, 10, b"p2:1")]}
    report = check_election(WINS, PROCLAIMS, reordered)
    assert any("term 9 went from revision 12 to 10" in v for v in report.violations)


def test_election_catches_a_value_from_the_wrong_leader() -> None:
    report = check_election(WINS, PROCLAIMS, {"o1": [Observed(b"e/2", 9, 10, b"p1:7")]})
    assert any("not written by its leader p2" in v for v in report.violations)


def test_election_catches_a_slow_failover() -> None:
    report = check_election(WINS, PROCLAIMS, OBSERVED, failovers=[4.5], failover_bound=3.0)
    assert any("failover took 4.50 s" in v for v in report.violations)


# -- Semaphore -----------------------------------------------------------------------------------------------

SEM_EVENTS = [
    KeyEvent(10, "put", b"s/a", 10),
    KeyEvent(11, "put", b"s/b", 11),
    KeyEvent(12, "put", b"s/c", 12),  # waits: limit 2
    KeyEvent(16, "delete", b"s/a"),  # a releases; c holds from here
]


def test_semaphore_accepts_a_correct_history() -> None:
    claims = [
        Claim("a", b"s/a", 10, 13),
        Claim("b", b"s/b", 11, 14),
        Claim("a", b"s/a", 10, 15),
        Claim("c", b"s/c", 12, 17),
        Claim("b", b"s/b", 11, 18),
    ]
    report = check_semaphore(2, SEM_EVENTS, claims)
    assert report.ok, report.summary()
    assert report.stats["peak_holders"] == 2


def test_semaphore_catches_a_third_holder() -> None:
    claims = [Claim("a", b"s/a", 10, 13), Claim("c", b"s/c", 12, 14)]
    report = check_semaphore(2, SEM_EVENTS, claims)
    assert any("worked as holder #3 of limit 2" in v for v in report.violations)


def test_semaphore_catches_a_stale_holder_still_working() -> None:
    # a's permit went with its key at 16, but a went on working at 18: three worked at 17.
    claims = [
        Claim("a", b"s/a", 10, 13),
        Claim("b", b"s/b", 11, 14),
        Claim("c", b"s/c", 12, 17),
        Claim("a", b"s/a", 10, 18),
        Claim("b", b"s/b", 11, 19),
    ]
    report = check_semaphore(2, SEM_EVENTS, claims)
    assert any("worked under b's/a'@10, gone" in v for v in report.violations)
    assert any("3 holders were working" in v for v in report.violations)


# -- DoubleBarrier -------------------------------------------------------------------------------------------


def _round(round_: int, base: float) -> list[BarrierVisit]:
    return [
        BarrierVisit("a", round_, base + 0.0, base + 0.31, base + 0.5, base + 0.92),
        BarrierVisit("b", round_, base + 0.1, base + 0.30, base + 0.7, base + 0.91),
        BarrierVisit("c", round_, base + 0.3, base + 0.30, base + 0.9, base + 0.90),
    ]


def test_double_barrier_accepts_a_correct_history() -> None:
    report = check_double_barrier(3, [*_round(7, 0.0), *_round(12, 1.0)])
    assert report.ok, report.summary()


def test_double_barrier_catches_an_early_enter() -> None:
    visits = _round(7, 0.0)
    visits[0] = BarrierVisit("a", 7, 0.0, 0.2, 0.5, 0.92)  # returned before c even arrived (0.3)
    report = check_double_barrier(3, visits)
    assert any("a passed enter" in v for v in report.violations)


def test_double_barrier_catches_an_early_leave() -> None:
    visits = _round(7, 0.0)
    visits[1] = BarrierVisit("b", 7, 0.1, 0.30, 0.7, 0.8)  # left before c invoked leave (0.9)
    report = check_double_barrier(3, visits)
    assert any("b passed leave" in v for v in report.violations)


def test_double_barrier_catches_an_overfull_round() -> None:
    visits = [*_round(7, 0.0), BarrierVisit("d", 7, 0.0, 0.4, 0.9, 0.95)]
    report = check_double_barrier(3, visits)
    assert any("4 members > count 3" in v for v in report.violations)


# -- Watch ---------------------------------------------------------------------------------------------------

REFERENCE = [
    WatchEvent(5, b"k1", "put", b"a"),
    WatchEvent(6, b"k2", "put", b"b"),
    WatchEvent(7, b"k1", "delete"),
    WatchEvent(8, b"k1", "put", b"c"),
    WatchEvent(8, b"k3", "put", b"d"),  # one txn, one revision
]


def test_watch_accepts_the_exact_history_in_any_grouping() -> None:
    responses = [REFERENCE[1:3], REFERENCE[3:5]]
    report = check_watch(REFERENCE, responses, start=6)
    assert report.ok, report.summary()


@pytest.mark.parametrize(
    ("what", "responses", "message"),
    [
        ("gap", [[REFERENCE[1]], REFERENCE[3:5]], "1 missing"),
        ("duplicate", [REFERENCE[1:3], REFERENCE[2:5]], "duplicate"),
        ("reorder", [[REFERENCE[2], REFERENCE[1]], REFERENCE[3:5]], "not ordered"),
        ("split revision", [REFERENCE[1:4], [REFERENCE[4]]], "not atomic"),
        ("wrong start", [REFERENCE[0:3], REFERENCE[3:5]], "1 unexpected"),
        ("wrong value", [[REFERENCE[1], WatchEvent(7, b"k1", "put", b"x")], REFERENCE[3:5]], "differ"),
    ],
)
def test_watch_catches(what: str, responses: list[list[WatchEvent]], message: str) -> None:
    report = check_watch(REFERENCE, responses, start=6)
    assert any(message in v for v in report.violations), (what, report.summary())


# -- Bank ----------------------------------------------------------------------------------------------------

INITIAL = {b"a": 100, b"b": 100, b"c": 100}
CHANGES = [(10, b"a", 90), (10, b"b", 110), (12, b"c", 50), (12, b"a", 140)]


def test_bank_accepts_a_correct_history() -> None:
    audits = [
        Audit(9, INITIAL),
        Audit(11, {b"a": 90, b"b": 110, b"c": 100}),
        Audit(12, {b"a": 140, b"b": 110, b"c": 50}),
    ]
    report = check_bank(300, INITIAL, audits, CHANGES)
    assert report.ok, report.summary()


def test_bank_catches_a_torn_transfer_and_a_bad_audit() -> None:
    changes = [*CHANGES, (13, b"b", 100)]  # money vanished: half a transfer
    audits = [Audit(11, {b"a": 90, b"b": 100, b"c": 100})]  # a snapshot that never existed
    report = check_bank(300, INITIAL, audits, changes)
    assert any("not zero-sum" in v for v in report.violations)
    assert any("sums to 290" in v for v in report.violations)
    assert any("differs from the replayed state" in v for v in report.violations)


# -- Recovery ------------------------------------------------------------------------------------------------


def test_recovery_checks_the_bound() -> None:
    assert check_recovery([Recovery("kill", 1.0, 2.5)], bound=2.0).ok
    report = check_recovery([Recovery("kill", 1.0, 3.5), Recovery("pause", 5.0, None)], bound=2.0)
    assert len(report.violations) == 2
