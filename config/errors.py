"""The errors every layer shares, defined at the ground so config needs nothing above it.

``PtimError`` is the base of errors the CLI and the app turn into one line and an exit
code; ``backend.errors`` re-exports it and ``UsageError`` and adds its own kinds. A
``RecoveryLog`` is whatever counts recoveries (``backend.errors.ErrorStats``): config
records into the one its caller passes and never picks one itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class PtimError(Exception):
    """Base of errors the CLI turns into one line and an exit code."""

    exit_code = 1


class UsageError(PtimError):
    """Bad flags or config (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """Invalid settings (exit 2): one line per problem, naming source, key, value, allowed."""

    category = "config"

    def __init__(self, problems: Sequence[str]) -> None:
        """Keep ``problems`` (duplicates dropped) and join them as the message."""
        self.problems: list[str] = list(dict.fromkeys(problems))
        super().__init__("\n".join(self.problems))


class RecoveryLog(Protocol):
    """Counts a recovery: ``category`` and ``strategy`` as in ``backend.errors`` (strings)."""

    def record(self, category: str, strategy: str, where: str, reason: str) -> None:
        """Count one recovery of ``category`` by ``strategy`` at ``where`` because ``reason``."""
