"""The public surface: explicit, sorted ``__all__`` and tidy ``__module__`` names (STYLE rule 9)."""

from __future__ import annotations

import types

import pytest

import etcdsync
import etcdsync.client
import etcdsync.testing


@pytest.mark.parametrize("module", [etcdsync, etcdsync.client, etcdsync.testing])
def test_all_is_sorted_tuple_of_existing_public_names(module: types.ModuleType) -> None:
    assert isinstance(module.__all__, tuple)
    assert list(module.__all__) == sorted(module.__all__)
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), name


@pytest.mark.parametrize("module", [etcdsync, etcdsync.client])
def test_every_public_class_is_exported(module: types.ModuleType) -> None:
    public = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_") and isinstance(obj, type) and obj.__module__.startswith("etcdsync")
    }
    assert public <= set(module.__all__)


def test_every_error_is_importable_from_etcdsync_and_client() -> None:
    errors = {name for name in etcdsync.client.__all__ if name.endswith("Error")}
    assert errors <= set(etcdsync.__all__)
    for name in errors:
        assert getattr(etcdsync, name) is getattr(etcdsync.client, name)
        assert issubclass(getattr(etcdsync, name), etcdsync.EtcdError)


def test_errors_report_public_module() -> None:
    assert etcdsync.CompactedError.__module__ == "etcdsync.client"
    assert etcdsync.SessionExpiredError.__module__ == "etcdsync.client"


def test_version_is_a_string() -> None:
    assert isinstance(etcdsync.__version__, str)
    assert etcdsync.__version__[0].isdigit()
