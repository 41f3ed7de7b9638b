"""Finding the etcd binary; no server needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from etcdsync.testing import EtcdNotFoundError, etcd_cluster, etcd_process, etcd_server, find_etcd

HINT = (
    "etcd binary not found on PATH and $ETCD_BIN is not set; install it with "
    "`apt-get install etcd-server` (Debian) or run `make test`, which installs it"
)


@pytest.fixture
def no_etcd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ETCD_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


@pytest.mark.usefixtures("no_etcd")
def test_missing_binary_raises_with_install_hint() -> None:
    with pytest.raises(EtcdNotFoundError) as info:
        find_etcd()
    assert str(info.value) == HINT
    assert not isinstance(info.value, OSError)


@pytest.mark.usefixtures("no_etcd")
async def test_launchers_raise_before_starting_anything() -> None:
    with pytest.raises(EtcdNotFoundError, match=r"apt-get install etcd-server"):
        async with etcd_server():
            pytest.fail("unreachable")
    with pytest.raises(EtcdNotFoundError, match=r"apt-get install etcd-server"):
        async with etcd_cluster():
            pytest.fail("unreachable")
    with pytest.raises(EtcdNotFoundError, match=r"apt-get install etcd-server"), etcd_process():
        pytest.fail("unreachable")


def test_etcd_bin_wins_over_path(no_etcd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.path.realpath("/usr/bin/etcd")
    link = no_etcd / "my-etcd"
    link.symlink_to(real)
    monkeypatch.setenv("ETCD_BIN", str(link))
    assert find_etcd() == str(link)


def test_etcd_bin_that_is_not_executable_is_reported(no_etcd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETCD_BIN", str(no_etcd / "missing"))
    with pytest.raises(
        EtcdNotFoundError, match=r"^\$ETCD_BIN='.*missing' is not an executable file; etcd binary"
    ):
        find_etcd()


def test_path_lookup(no_etcd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_etcd / "etcd").symlink_to(os.path.realpath("/usr/bin/etcd"))
    assert find_etcd() == str(no_etcd / "etcd")
