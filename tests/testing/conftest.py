"""Helpers for the harness's own tests: an isolated temp base, and /proc scans for leftover etcd processes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # the process is gone, or not ours to read
        return b""


def live_processes_matching(needle: str) -> list[tuple[int, str]]:
    """(pid, cmdline) of every live, non-zombie process whose environment or command line contains ``needle``.

    The calling process is left out (an inner pytest run carries its own marker).
    """
    found = []
    wanted = needle.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat or stat[stat.rfind(b")") + 2 :].startswith(b"Z"):
            continue
        cmdline = _read(f"/proc/{entry}/cmdline")
        if wanted in _read(f"/proc/{entry}/environ") or wanted in cmdline:
            found.append((int(entry), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


def etcdsync_dirs(base: Path) -> list[str]:
    """Names of ``etcdsync-*`` entries directly under ``base``."""
    return sorted(p.name for p in base.iterdir() if p.name.startswith("etcdsync-")) if base.exists() else []


@pytest.fixture
def isolated_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$ETCDSYNC_TMPDIR`` at a fresh directory, so this test's etcd dirs (and command lines) are its own."""
    base = tmp_path / "etcd-base"
    base.mkdir()
    monkeypatch.setenv("ETCDSYNC_TMPDIR", str(base))
    return base


@pytest.fixture
def leftovers() -> Callable[[Path], tuple[list[tuple[int, str]], list[str]]]:
    """``leftovers(base)`` -> (live processes mentioning ``base``, ``etcdsync-*`` dirs under ``base``)."""

    def check(base: Path) -> tuple[list[tuple[int, str]], list[str]]:
        return live_processes_matching(str(base)), etcdsync_dirs(base)

    return check


@pytest.fixture
def processes_matching() -> Callable[[str], list[tuple[int, str]]]:
    """``processes_matching(needle)``: live processes whose environment or command line contains it."""
    return live_processes_matching
