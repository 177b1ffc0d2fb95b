"""Library messages a user cannot act on, silenced before the library loads."""

from __future__ import annotations

import logging

PROBE_LOGGERS = ("bitsandbytes.backends.cpu.ops",)
"""Loggers that warn, on import, that an optional prebuilt kernel (fetched from a model
hub, which cra never reaches) is missing, then fall back to their own."""


def quiet_probes() -> None:
    """Show only errors from the loggers of :data:`PROBE_LOGGERS`."""
    for name in PROBE_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
