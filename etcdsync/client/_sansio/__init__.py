"""Pure protocol logic, no trio/grpc imports.

Everything below this package is synchronous and deterministic: inputs are bytes, events and
``now: float`` values handed in by the trio shell, outputs are values and actions the shell carries
out. Tests drive it without an event loop (``tests/sansio/``).
"""

from __future__ import annotations
