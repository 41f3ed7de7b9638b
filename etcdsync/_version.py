"""The package version, read by ``pyproject.toml`` and ``etcdsync --version``."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
