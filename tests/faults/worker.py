"""Client processes for the fault tests: ``python tests/faults/worker.py COMMAND ARGS...``.

Each prints its history as JSON lines on stdout (flushed): ``{"p": name, "f": op, "type":
"invoke|ok|fail|info", "t": time.monotonic(), ...}``. ``time.monotonic()`` is the system-wide
CLOCK_MONOTONIC, so the parent can compare it with its own records. Every loop is bounded by a duration.

Commands:

- ``mutex NAME ENDPOINTS LOCK COUNTER TTL SECONDS FENCED CS``: acquire the Mutex LOCK, read the counter,
  sleep CS seconds (the window a pause lands in), write ``<count+1>:<NAME>:<seq>`` (guarded by the lock when
  FENCED is 1), release; repeat for SECONDS. Uses ``acquire()``/``release()`` directly, without the
  cancel-on-expiry scope of ``async with mutex``, like code that does not observe cancellation between its
  check and its write: a holder paused past its TTL wakes up and writes anyway. Only the fence saves it.
- ``elect NAME ENDPOINTS ELECTION TTL SECONDS PROCLAIMS INTERVAL``: campaign with ``<NAME>:c<seq>``; when
  leading, write PROCLAIMS values ``<NAME>:<seq>`` to its own key guarded by its leadership, INTERVAL seconds
  apart, then resign; repeat for SECONDS.
"""

from __future__ import annotations

import json
import sys
import time

import trio

import etcdsync


def emit(**fields: object) -> None:
    fields.setdefault("t", time.monotonic())
    print(json.dumps(fields), flush=True)


async def mutex(
    me: str, endpoints: str, lock: str, counter: str, ttl: int, seconds: float, fenced: bool, cs: float
) -> None:
    deadline = time.monotonic() + seconds
    seq = 0
    async with etcdsync.open_client(endpoints.split(",")) as client:
        while time.monotonic() < deadline:
            try:
                async with etcdsync.open_session(client, ttl=ttl) as session:
                    emit(p=me, f="session", type="ok", lease=session.lease_id)
                    while time.monotonic() < deadline and not session.expired:
                        m = etcdsync.Mutex(session, lock)
                        with trio.move_on_after(max(0.0, deadline - time.monotonic())):
                            await m.acquire()
                        if not m.locked:
                            break
                        token = m.fencing_token
                        emit(p=me, f="acquire", type="ok", token=token)
                        kv = await client.get(counter)
                        count = int(kv.value.split(b":")[0]) if kv is not None else 0
                        await trio.sleep(cs)
                        value = f"{count + 1}:{me}:{seq}"
                        seq += 1
                        emit(p=me, f="write", type="invoke", token=token, value=value)
                        try:
                            if fenced:
                                resp = await client.put(counter, value, guard=m.is_owner())
                            else:
                                resp = await client.put(counter, value)
                        except etcdsync.GuardFailedError:
                            emit(p=me, f="write", type="fail", token=token, value=value)
                        except etcdsync.NoEndpointAvailableError as exc:  # never sent: not applied
                            emit(p=me, f="write", type="fail", token=token, value=value, error=repr(exc))
                        except etcdsync.EtcdError as exc:
                            emit(p=me, f="write", type="info", token=token, value=value, error=repr(exc))
                        else:
                            emit(
                                p=me, f="write", type="ok", token=token, value=value, rev=resp.header.revision
                            )
                        emit(p=me, f="release", type="invoke", token=token)
                        try:
                            await m.release()
                        except (etcdsync.SessionExpiredError, etcdsync.LockReleasedError) as exc:
                            emit(p=me, f="release", type="fail", token=token, error=repr(exc))
                        except etcdsync.EtcdError as exc:
                            emit(p=me, f="release", type="info", token=token, error=repr(exc))
                    if session.expired:
                        emit(p=me, f="session", type="lost", lease=session.lease_id)
            except etcdsync.SessionExpiredError as exc:
                emit(p=me, f="session", type="lost", error=repr(exc))
            except etcdsync.EtcdError as exc:
                emit(p=me, f="error", type="info", error=repr(exc))
                await trio.sleep(0.1)
    emit(p=me, f="done", type="ok")


async def elect(
    me: str, endpoints: str, name: str, ttl: int, seconds: float, proclaims: int, interval: float
) -> None:
    deadline = time.monotonic() + seconds
    seq = 0
    async with etcdsync.open_client(endpoints.split(",")) as client:
        while time.monotonic() < deadline:
            try:
                async with etcdsync.open_session(client, ttl=ttl) as session:
                    while time.monotonic() < deadline and not session.expired:
                        election = etcdsync.Election(session, name)
                        with trio.move_on_after(max(0.0, deadline - time.monotonic())):
                            await election.campaign(f"{me}:c{seq}")
                        if not election.leading:
                            break
                        emit(p=me, f="win", type="ok", key=election.key.decode(), term=election.revision)
                        for _ in range(proclaims):
                            value = f"{me}:{seq}"
                            seq += 1
                            try:
                                resp = await client.put(
                                    election.key, value, lease=session.lease_id, guard=election.is_leader()
                                )
                            except etcdsync.GuardFailedError:
                                emit(p=me, f="proclaim", type="fail", term=election.revision, value=value)
                                break
                            except etcdsync.EtcdError as exc:
                                emit(
                                    p=me,
                                    f="proclaim",
                                    type="info",
                                    term=election.revision,
                                    value=value,
                                    error=repr(exc),
                                )
                                break
                            emit(
                                p=me,
                                f="proclaim",
                                type="ok",
                                term=election.revision,
                                value=value,
                                rev=resp.header.revision,
                            )
                            await trio.sleep(interval)
                        term = election.revision
                        await election.resign()
                        emit(p=me, f="resign", type="ok", term=term)
            except etcdsync.SessionExpiredError as exc:
                emit(p=me, f="session", type="lost", error=repr(exc))
            except etcdsync.EtcdError as exc:
                emit(p=me, f="error", type="info", error=repr(exc))
                await trio.sleep(0.1)
    emit(p=me, f="done", type="ok")


def main(argv: list[str]) -> None:
    command, me, *args = argv
    if command == "mutex":
        endpoints, lock, counter, ttl, seconds, fenced, cs = args
        trio.run(mutex, me, endpoints, lock, counter, int(ttl), float(seconds), fenced == "1", float(cs))
    elif command == "elect":
        endpoints, name, ttl, seconds, proclaims, interval = args
        trio.run(elect, me, endpoints, name, int(ttl), float(seconds), int(proclaims), float(interval))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
