"""Error categories, recovery strategies and the ``@recoverable`` decorator.

Every recovery is counted in an ``ErrorStats`` (shared by the whole process by default)
so the dashboard and the summary line can show it, and logged once per distinct reason.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

# the base errors live at the ground (config) so that config raises them without importing up
from config.errors import ConfigError, PtimError, UsageError

__all__ = [
    "STATS", "Category", "ConfigError", "ErrorStats", "InputError", "OutputError", "PtimError",
    "RecoveryEvent", "Strategy", "UsageError", "recoverable",
]

log = logging.getLogger("ptim.errors")

F = TypeVar("F", bound=Callable[..., Any])


class Category(StrEnum):
    """What failed."""

    MEMORY = "memory"
    GPU = "gpu"
    IO = "io"
    PROCESSING = "processing"
    CONFIG = "config"


class Strategy(StrEnum):
    """How it is recovered."""

    RETRY = "retry"
    FALLBACK = "fallback"
    DEGRADE = "degrade"
    RESTART = "restart"


class InputError(PtimError):
    """Unreadable or unsupported input (exit 3)."""

    exit_code = 3


class OutputError(PtimError):
    """Output not writable (exit 4)."""

    exit_code = 4


@dataclass(frozen=True, slots=True)
class RecoveryEvent:
    """One recovery: when, what failed, how it was handled and why."""

    time: float
    category: str
    strategy: str
    where: str
    reason: str


class ErrorStats:
    """Thread-safe counters of recoveries plus the most recent events."""

    def __init__(self, keep: int = 200) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._events: deque[RecoveryEvent] = deque(maxlen=keep)
        self._logged: set[tuple[str, str]] = set()

    def record(
        self, category: Category | str, strategy: Strategy | str, where: str, reason: str,
        log_it: bool = True,
    ) -> None:
        """Count one recovery; log it the first time this (where, reason) occurs.

        ``category`` and ``strategy`` are members or their values (config passes strings);
        an unknown value raises ValueError. ``log_it=False`` when the caller already told
        the user in its own words.
        """
        category, strategy = Category(category), Strategy(strategy)
        ev = RecoveryEvent(time.time(), category.value, strategy.value, where, reason)
        with self._lock:
            self._counts[f"{category.value}.{strategy.value}"] += 1
            self._events.append(ev)
            first = (where, reason) not in self._logged
            self._logged.add((where, reason))
        if first and log_it:
            log.warning("%s: %s (%s, %s)", where, reason, category.value, strategy.value)

    def counts(self) -> dict[str, int]:
        """Counts keyed ``category.strategy``."""
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        """All recoveries so far."""
        with self._lock:
            return sum(self._counts.values())

    def events(self) -> list[RecoveryEvent]:
        """The most recent events, oldest first."""
        with self._lock:
            return list(self._events)

    def reset(self) -> None:
        """Zero the counters and forget the events."""
        with self._lock:
            self._counts.clear()
            self._events.clear()

    def write_report(self, folder: Path) -> Path:
        """Write ``error_report_<time>.json`` into folder (atomically) and return its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime("error_report_%Y%m%d_%H%M%S.json")
        data = {"counts": self.counts(), "events": [asdict(e) for e in self.events()]}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)
        return path


STATS = ErrorStats()


def recoverable(
    category: Category,
    strategy: Strategy,
    *,
    fallback: Callable[..., Any] | None = None,
    retries: int = 0,
    exceptions: tuple[type[BaseException], ...] = (Exception,),
    stats: ErrorStats | Callable[..., ErrorStats] | None = None,
    on_retry: Callable[..., Any] | None = None,
) -> Callable[[F], F]:
    """Wrap a failure point: retry ``retries`` times, then call ``fallback``.

    ``fallback`` gets the same arguments as the wrapped function plus ``error=`` (the last
    exception) and its result is returned; without one the last exception is re-raised.
    ``on_retry`` (same arguments plus ``error=``) runs before each retry, e.g. to free
    caches. Each retry and each fallback is recorded in ``stats`` (default: ``STATS``);
    ``stats`` may be a function of the call's arguments, e.g. ``lambda self, *a, **k:
    self.errors`` for a per-object counter.
    PtimError is never swallowed: it already is a user-facing answer.
    """

    def deco(fn: F) -> F:
        where = getattr(fn, "__qualname__", repr(fn))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            st = stats(*args, **kwargs) if callable(stats) else (stats or STATS)
            attempt = 0
            while True:
                try:
                    return fn(*args, **kwargs)
                except PtimError:
                    raise
                except exceptions as exc:
                    reason = f"{type(exc).__name__}: {exc}".strip()
                    if attempt < retries:
                        attempt += 1
                        st.record(category, Strategy.RETRY, where, reason)
                        if on_retry is not None:
                            on_retry(*args, error=exc, **kwargs)
                        continue
                    if fallback is None:
                        raise
                    st.record(category, strategy, where, reason)
                    return fallback(*args, error=exc, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco
