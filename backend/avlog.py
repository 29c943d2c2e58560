"""FFmpeg's own messages (through PyAV) go to our log, never straight to the terminal.

FFmpeg reports damage in lines like ``[h264 @ 0x...] Invalid NAL unit size`` or ``[mov,mp4,
...] moov atom not found``. The user gets our one error line instead; FFmpeg's lines are
details for the log file (and the console only under ``--verbose``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

LOGGER = "libav"
"""The logger PyAV sends FFmpeg's messages to (as ``libav.<component>``)."""


def route_libav_logs(handlers: Sequence[logging.Handler]) -> None:
    """Send FFmpeg's warnings and errors to ``handlers`` and nowhere else.

    Pass the log file's handlers, plus the console's only under ``--verbose``. With no
    handlers FFmpeg stays silent (PyAV's own default). Never propagates to the root logger
    or Python's last-resort stderr handler. Calling again replaces the routing.
    """
    import av.logging

    logger = logging.getLogger(LOGGER)
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    logger.handlers[:] = list(handlers) or [logging.NullHandler()]
    # PyAV only formats and forwards messages at or above this level (and errors)
    av.logging.set_level(av.logging.WARNING if handlers else None)
