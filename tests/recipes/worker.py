"""A second process for the recipe tests: ``python tests/recipes/worker.py COMMAND ...``.

Commands (each prints one JSON object per line on stdout, flushed):

- ``counter ENDPOINT NAME COUNTER_KEY TASKS ROUNDS``: TASKS tasks, each with its own session, each
  acquiring the Mutex NAME ROUNDS times and incrementing COUNTER_KEY with a guarded write; prints
  ``{"token": t, "value": v}`` for every increment (v: the counter value written).
- ``hold ENDPOINT NAME TTL``: acquire the Mutex NAME with a session of TTL seconds, print
  ``{"held": key, "token": t}``, then hold it until killed.
- ``lead ENDPOINT NAME VALUE TTL``: campaign in the Election NAME, print ``{"leader": key, "rev": r}``,
  then lead until killed.
- ``semaphore ENDPOINT NAME LIMIT RECORDS TASKS ROUNDS``: TASKS tasks, each with its own session, each
  taking a permit of the Semaphore NAME ROUNDS times; inside, it writes ``RECORDS<token>`` and then
  deletes it, both guarded by ``is_owner()``, and prints ``{"token": t, "start": r1, "end": r2}`` (the
  two writes' revisions).
- ``dbarrier ENDPOINT NAME COUNT TTL``: enter the DoubleBarrier NAME (COUNT participants) with a session
  of TTL seconds, print ``{"entered": key, "round": r, "lease": l}``, then stay in the round until killed.
"""

from __future__ import annotations

import json
import sys

import trio

import etcdsync
from etcdsync._double_barrier import DoubleBarrier
from etcdsync._semaphore import Semaphore


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def counter(endpoint: str, name: str, counter_key: str, tasks: int, rounds: int) -> None:
    async with etcdsync.open_client(endpoint) as client:

        async def worker() -> None:
            async with etcdsync.open_session(client, ttl=10) as session:
                for _ in range(rounds):
                    async with etcdsync.Mutex(session, name) as mutex:
                        kv = await client.get(counter_key)
                        value = int(kv.value) + 1 if kv is not None else 1
                        await client.put(counter_key, b"%d" % value, guard=mutex.is_owner())
                        emit(token=mutex.fencing_token, value=value)

        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker)


async def hold(endpoint: str, name: str, ttl: int) -> None:
    async with (
        etcdsync.open_client(endpoint) as client,
        etcdsync.open_session(client, ttl=ttl) as session,
        etcdsync.Mutex(session, name) as mutex,
    ):
        emit(held=mutex.key.decode(), token=mutex.fencing_token, lease=session.lease_id)
        await trio.sleep_forever()


async def lead(endpoint: str, name: str, value: str, ttl: int) -> None:
    async with etcdsync.open_client(endpoint) as client, etcdsync.open_session(client, ttl=ttl) as session:
        election = etcdsync.Election(session, name)
        async with election.leadership(value):
            emit(leader=election.key.decode(), rev=election.revision, lease=session.lease_id)
            await trio.sleep_forever()


async def semaphore_section(client: etcdsync.Client, sem: Semaphore, records: bytes) -> dict[str, int]:
    """One critical section: a guarded record put at its start and deleted at its end."""
    record = records + b"%d" % sem.fencing_token
    start = await client.put(record, b"in", guard=sem.is_owner())
    await trio.sleep(0.001)  # let the other holders run in between
    end = await client.delete(record, guard=sem.is_owner())
    return {"token": sem.fencing_token, "start": start.header.revision, "end": end.header.revision}


async def semaphore(endpoint: str, name: str, limit: int, records: str, tasks: int, rounds: int) -> None:
    async with etcdsync.open_client(endpoint) as client:

        async def worker() -> None:
            async with etcdsync.open_session(client, ttl=10) as session:
                sem = Semaphore(session, name, limit)
                for _ in range(rounds):
                    async with sem:
                        emit(**await semaphore_section(client, sem, records.encode()))

        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker)


async def dbarrier(endpoint: str, name: str, count: int, ttl: int) -> None:
    async with (
        etcdsync.open_client(endpoint) as client,
        etcdsync.open_session(client, ttl=ttl) as session,
        DoubleBarrier(session, name, count) as dbar,
    ):
        emit(entered=dbar.key.decode(), round=dbar.round, lease=session.lease_id)
        await trio.sleep_forever()


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "counter":
        endpoint, name, key, tasks, rounds = args
        trio.run(counter, endpoint, name, key, int(tasks), int(rounds))
    elif command == "hold":
        endpoint, name, ttl = args
        trio.run(hold, endpoint, name, int(ttl))
    elif command == "lead":
        endpoint, name, value, ttl = args
        trio.run(lead, endpoint, name, value, int(ttl))
    elif command == "semaphore":
        endpoint, name, limit, records, tasks, rounds = args
        trio.run(semaphore, endpoint, name, int(limit), records, int(tasks), int(rounds))
    elif command == "dbarrier":
        endpoint, name, count, ttl = args
        trio.run(dbarrier, endpoint, name, int(count), int(ttl))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
