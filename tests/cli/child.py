"""A COMMAND for ``etcdsync lock NAME -- python child.py MODE ...`` in the CLI tests.

Prints JSON lines on stdout (flushed): first ``{"pid": ..., "env": {...}}`` with every ``ETCDSYNC_*``
and ``ETCD_LOCK_*`` variable, then one ``{"signal": ...}`` line per signal it handles. It never
outlives a broken test by long: it exits by itself (status 99) after 60 s.

Modes:

- ``report CODE``: on SIGINT exit CODE; on SIGTERM exit 0.
- ``stubborn``: ignore SIGTERM (but say so); only SIGKILL ends it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from types import FrameType


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    mode = sys.argv[1]
    if mode == "report":
        code = int(sys.argv[2])

        def on_int(signum: int, frame: FrameType | None) -> None:
            emit(signal="SIGINT")
            os._exit(code)

        def on_term(signum: int, frame: FrameType | None) -> None:
            emit(signal="SIGTERM")
            os._exit(0)

        signal.signal(signal.SIGINT, on_int)
        signal.signal(signal.SIGTERM, on_term)
    elif mode == "stubborn":

        def ignore(signum: int, frame: FrameType | None) -> None:
            emit(signal="SIGTERM ignored")

        signal.signal(signal.SIGTERM, ignore)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    env = {k: v for k, v in os.environ.items() if k.startswith(("ETCDSYNC_", "ETCD_LOCK_"))}
    emit(pid=os.getpid(), env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(99)


if __name__ == "__main__":
    main()
