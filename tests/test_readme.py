"""The README's example runs against a real etcd (so it cannot rot)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import trio

README = Path(__file__).resolve().parent.parent / "README.md"


async def test_readme_example_runs(etcd_endpoint: str) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    program = code.group(1).replace('"127.0.0.1:2379"', repr(etcd_endpoint))
    result = await trio.run_process([sys.executable, "-c", program], capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
