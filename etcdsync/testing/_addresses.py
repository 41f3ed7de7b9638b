"""Choosing loopback addresses and ports for etcd members.

Linux routes all of ``127.0.0.0/8`` to ``lo``, so every member gets its *own* address and all members use
etcd's usual ports (2379 client, 2380 peer, 2381 metrics). Two harnesses would only collide if they drew the
same random ``127.a.b.0/24`` block, and each pick is checked by binding every address and port it needs first.
Nothing is held between the check and etcd's own bind; on loopback, with random blocks, that window is
harmless in practice. Blocks under ``127.0.0.0/16`` are never drawn: ``127.0.0.1``, ``127.0.0.53`` and
``127.0.1.1`` belong to others.
"""

from __future__ import annotations

import contextlib
import secrets
import socket

import attrs

__all__ = ("DEFAULT_PORTS", "MemberAddress", "pick_block", "pick_single")

DEFAULT_PORTS = (2379, 2380, 2381)
_ATTEMPTS = 64


@attrs.frozen
class MemberAddress:
    """Where one member listens: ``host`` plus its client, peer and metrics ports."""

    host: str
    client_port: int
    peer_port: int
    metrics_port: int


def _is_free(host: str, port: int) -> bool:
    # SO_REUSEADDR mirrors etcd's own listeners: TIME_WAIT leftovers don't block, a live listener does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_ports(host: str, count: int) -> list[int]:
    # Hold every socket until all are bound so the ports are distinct.
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _random_block() -> str:
    return f"127.{1 + secrets.randbelow(254)}.{secrets.randbelow(256)}"


def pick_single(host: str | None) -> MemberAddress:
    """Pick an address for a single server.

    With ``host`` given, its default ports are used if free, else three ephemeral ports on it. Without, a
    random ``127.a.b.c`` whose default ports are free is drawn.

    Raises:
        OSError: ``host`` cannot be bound at all, or no free random address was found.
    """
    if host is not None:
        if all(_is_free(host, port) for port in DEFAULT_PORTS):
            return MemberAddress(host, *DEFAULT_PORTS)
        client, peer, metrics = _ephemeral_ports(host, 3)
        return MemberAddress(host, client, peer, metrics)
    for _ in range(_ATTEMPTS):
        candidate = f"{_random_block()}.{1 + secrets.randbelow(254)}"
        if all(_is_free(candidate, port) for port in DEFAULT_PORTS):
            return MemberAddress(candidate, *DEFAULT_PORTS)
    raise OSError(f"no free loopback address with ports {DEFAULT_PORTS} after {_ATTEMPTS} attempts")


def pick_block(size: int) -> list[MemberAddress]:
    """Pick ``size`` addresses ``127.a.b.1`` … ``127.a.b.<size>`` in one random, entirely free block.

    Raises:
        ValueError: ``size`` is not between 1 and 254.
        OSError: No free block was found.
    """
    if not 1 <= size <= 254:
        raise ValueError(f"size must be between 1 and 254, got {size}")
    for _ in range(_ATTEMPTS):
        block = _random_block()
        hosts = [f"{block}.{i}" for i in range(1, size + 1)]
        if all(_is_free(host, port) for host in hosts for port in DEFAULT_PORTS):
            return [MemberAddress(host, *DEFAULT_PORTS) for host in hosts]
    raise OSError(f"no free loopback block for {size} members after {_ATTEMPTS} attempts")
