"""Endpoint parsing and the failover order, driven with a hand-held clock."""

from __future__ import annotations

import pytest

from etcdsync.client._sansio._endpoints import Endpoint, EndpointPicker, parse_endpoint, parse_endpoints


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2379", Endpoint("127.0.0.1", 2379, None)),
        ("http://127.0.0.1:2379", Endpoint("127.0.0.1", 2379, False)),
        ("https://etcd.example:2379/", Endpoint("etcd.example", 2379, True)),
        ("[::1]:2379", Endpoint("::1", 2379, None)),
        ("https://[::1]:2379", Endpoint("::1", 2379, True)),
        ("  localhost:1 ", Endpoint("localhost", 1, None)),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected


def test_address_brackets_ipv6() -> None:
    assert Endpoint("::1", 2379).address == "[::1]:2379"
    assert Endpoint("127.0.0.1", 2379).address == "127.0.0.1:2379"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1", "must be host:port"),
        ("127.0.0.1:", "no valid port"),
        ("127.0.0.1:0", "no valid port"),
        ("127.0.0.1:65536", "no valid port"),
        ("127.0.0.1:abc", "no valid port"),
        (":2379", "no host"),
        ("ftp://h:1", "scheme must be http:// or https://"),
        ("unix:///tmp/etcd.sock", "unix socket endpoints are not supported"),
        ("::1:2379", "must be host:port"),
        ("[::1]2379", "must be host:port"),
    ],
)
def test_parse_endpoint_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoint(text)


def test_parse_endpoint_type() -> None:
    with pytest.raises(TypeError, match="an endpoint must be a str"):
        parse_endpoint(2379)  # type: ignore[arg-type]


def test_parse_endpoints_forms() -> None:
    assert [e.address for e in parse_endpoints("a:1,b:2, c:3")] == ["a:1", "b:2", "c:3"]
    assert [e.address for e in parse_endpoints(["a:1", "https://b:2"])] == ["a:1", "b:2"]
    with pytest.raises(ValueError, match="at least one endpoint"):
        parse_endpoints([])
    with pytest.raises(ValueError, match="at least one endpoint"):
        parse_endpoints(" , ")
    with pytest.raises(ValueError, match="listed twice"):
        parse_endpoints(["a:1", "http://a:1"])


def test_picker_prefers_current_then_rotates() -> None:
    picker = EndpointPicker(["a", "b", "c"], cooldown=5.0)
    assert picker.order(0.0) == ["a", "b", "c"]
    picker.failed("a", now=10.0)
    assert picker.current == "b"
    assert picker.order(11.0) == ["b", "c", "a"]
    # Once the cooldown has passed, a is back in rotation order.
    assert picker.order(15.0) == ["b", "c", "a"]
    picker.succeeded("a")
    assert picker.order(15.0) == ["a", "b", "c"]


def test_picker_failed_endpoints_go_last_oldest_failure_first() -> None:
    picker = EndpointPicker(["a", "b", "c"], cooldown=5.0)
    picker.failed("a", now=1.0)
    picker.failed("b", now=2.0)
    assert picker.order(3.0) == ["c", "a", "b"]
    picker.failed("c", now=3.0)
    assert picker.order(4.0) == ["a", "b", "c"]
    assert picker.order(6.5) == ["a", "b", "c"]  # a is fresh again; b and c still cooling
    assert picker.order(7.5) == ["a", "b", "c"]


def test_picker_failure_of_non_preferred_keeps_preference() -> None:
    picker = EndpointPicker(["a", "b", "c"])
    picker.failed("c", now=0.0)
    assert picker.current == "a"
    assert picker.order(1.0) == ["a", "b", "c"]


def test_picker_replace_keeps_current_when_listed() -> None:
    picker = EndpointPicker(["a", "b"])
    picker.succeeded("b")
    picker.failed("a", now=0.0)
    picker.replace(["c", "b", "d"])
    assert picker.current == "b"
    assert picker.order(0.5) == ["b", "d", "c"]
    picker.replace(["x"])
    assert picker.current == "x"
    with pytest.raises(ValueError, match="at least one endpoint"):
        picker.replace([])
    with pytest.raises(ValueError, match="at least one endpoint"):
        EndpointPicker([])


def test_picker_success_of_unknown_endpoint_is_ignored() -> None:
    picker = EndpointPicker(["a"])
    picker.succeeded("zzz")
    assert picker.current == "a"


def test_picker_first_is_the_head_of_the_order_while_nothing_failed() -> None:
    picker = EndpointPicker(["a", "b", "c"], cooldown=5.0)
    assert picker.first() == "a" == picker.order(0.0)[0]
    picker.failed("c", now=0.0)  # another endpoint's failure does not matter
    assert picker.first() == "a" == picker.order(1.0)[0]
    picker.failed("a", now=1.0)
    assert picker.first() == "b" == picker.order(2.0)[0]
    picker.failed("b", now=2.0)
    # c is preferred now, but has a failure on record: first() leaves the choice to order().
    assert picker.current == "c"
    assert picker.first() is None
    assert picker.order(3.0) == ["c", "a", "b"]  # nobody is fresh: the oldest failure first
    picker.succeeded("b")
    assert picker.first() == "b"
    assert picker.order(3.0) == ["b", "c", "a"]


def test_picker_success_of_the_preferred_endpoint_keeps_the_order() -> None:
    picker = EndpointPicker(["a", "b"])
    picker.succeeded("a")
    assert picker.current == "a"
    assert picker.order(0.0) == ["a", "b"]
    picker.failed("b", now=0.0)
    picker.succeeded("a")  # a's success does not clear b's failure
    assert picker.order(1.0) == ["a", "b"]
    assert picker.first() == "a"
    picker.failed("a", now=1.0)
    assert picker.order(2.0) == ["b", "a"] and picker.first() is None  # b: preferred, still on record
