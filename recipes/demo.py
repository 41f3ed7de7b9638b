"""A first look at etcdsync: start a local etcd (unless --endpoints is given), write, read, and watch
a guarded write refuse to clobber a newer value.

Run it with ``make demo`` or ``python recipes/demo.py [--endpoints host:port]``. The coordinated
rollout recipe will take this program's place as the demo.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator

import trio

import etcdsync
from etcdsync.client import Compare


@contextlib.asynccontextmanager
async def _endpoint(given: str | None) -> AsyncIterator[str]:
    if given:
        yield given
        return
    from etcdsync.testing import etcd_server

    async with etcd_server() as server:
        print(f"started a local etcd at {server.endpoint} (data in a temporary directory)")
        yield server.endpoint
    print("stopped the local etcd and removed its data")


async def main(endpoints: str | None) -> None:
    async with _endpoint(endpoints) as endpoint, etcdsync.open_client(endpoint) as client:
        key = b"/etcdsync-demo/greeting"
        put = await client.put(key, b"hello from etcdsync")
        print(f"put {key.decode()!r} at revision {put.header.revision}")
        kv = await client.get(key)
        assert kv is not None
        print(f"got {kv.value.decode()!r} back (create revision {kv.create_revision}, version {kv.version})")

        # A guarded write applies only while the key is still the one we wrote.
        guard = Compare.mod_revision(key) == kv.mod_revision
        await client.put(key, b"second greeting", guard=guard)
        print("a guarded write succeeded while the key was unchanged")
        try:
            await client.put(key, b"stale greeting", guard=guard)
        except etcdsync.GuardFailedError as exc:
            current = exc.kvs[0].value.decode() if exc.kvs else None
            print(
                f"a second write with the same, now stale, guard was refused; the key still says {current!r}"
            )
        deleted = await client.delete(key)
        print(f"deleted {deleted.deleted} key; done")


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoints", help="etcd endpoint(s); default: start a local etcd")
    args = parser.parse_args(argv)
    trio.run(main, args.endpoints)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
