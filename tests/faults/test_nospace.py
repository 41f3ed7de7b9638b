"""The NOSPACE quota alarm: writes fail with a typed error, reads and keep-alives go on, sessions survive,
and after the maintenance procedure (compact, defragment, disarm) everything works again."""

from __future__ import annotations

import pytest
import trio

import etcdsync
from etcdsync.testing import etcd_server
from etcdsync.testing.faults import alarms, fill_until_nospace, recover_from_nospace

from .workloads import TIMING, report_line


@pytest.mark.deadline(60)
async def test_nospace_alarm_is_typed_and_survivable() -> None:
    async with (
        etcd_server(quota_backend_bytes=4 * 1024 * 1024, unsafe_no_fsync=True) as server,
        etcdsync.open_client(server.endpoint) as client,
    ):
        await client.put(b"/faults/nospace/before", b"1")
        async with etcdsync.open_session(client, ttl=2) as session:
            filled = await fill_until_nospace(server.endpoint)
            assert [alarm for _, alarm in await alarms(server.endpoint)] == ["NOSPACE"]
            report_line(f"quota of 4 MiB full after {filled} puts of 512 KiB")
            with pytest.raises(etcdsync.NoSpaceError, match="database space exceeded") as info:
                await client.put(b"/faults/nospace/k", b"v")
            assert isinstance(info.value, etcdsync.ResourceExhaustedError)
            with pytest.raises(etcdsync.NoSpaceError):
                await client.lease_grant(5)
            with pytest.raises(etcdsync.NoSpaceError):  # a lock is a write
                await etcdsync.Mutex(session, b"/faults/nospace/lock").acquire()
            assert (await client.range(b"/faults/nospace/lock/", prefix=True)).kvs == ()
            # Reads and keep-alives still work: the session outlives several TTLs.
            await trio.sleep(2.5 * TIMING)
            assert not session.expired
            kv = await client.get(b"/faults/nospace/before")
            assert kv is not None and kv.value == b"1"
            await recover_from_nospace([server.endpoint])
            assert await alarms(server.endpoint) == []
            async with etcdsync.Mutex(session, b"/faults/nospace/lock") as m:
                await client.put(b"/faults/nospace/k", b"after", guard=m.is_owner())
            assert not session.expired
