"""Deterministic fault injection for tests and drills. Inert unless PTIM_FAULTS is set.

``PTIM_FAULTS`` holds ``;``-separated rules (frame numbers count calls from 1):

- ``detect.raise=3,5``      the detector raises on calls 3 and 5
- ``detect.stall=7:2.5``    call 7 sleeps 2.5 s before answering (past the live deadline;
                            a file waits for it up to detector.hang_limit_s)
- ``detect.nan=9``          call 9 returns a NaN box
- ``detect.outside=11``     call 11 returns a box wholly outside the frame
- ``source.fail=10+5``      reads 10..14 raise SourceReadError, then reads work again
- ``pool.fail=2``           the next 2 pool allocations raise MemoryError
- ``write.fail=20``         the video writer raises "No space left on device" on frame 20

Nothing here runs when the variable is unset: the wrappers are never installed.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from backend.errors import UsageError
from backend.types import Detections


@dataclass
class Faults:
    """Which calls fail, parsed from PTIM_FAULTS."""

    detect_raise: set[int] = field(default_factory=set)
    detect_stall: dict[int, float] = field(default_factory=dict)
    detect_nan: set[int] = field(default_factory=set)
    detect_outside: set[int] = field(default_factory=set)
    source_fail: tuple[int, int] | None = None
    pool_fail: int = 0
    write_fail: int | None = None

    @property
    def touches_detector(self) -> bool:
        """True when any detector rule is set."""
        return bool(self.detect_raise or self.detect_stall or self.detect_nan
                    or self.detect_outside)


def _ints(text: str) -> set[int]:
    return {int(x) for x in text.split(",") if x.strip()}


def parse_faults(text: str) -> Faults:
    """Parse the PTIM_FAULTS syntax; raises UsageError naming the bad rule."""
    f = Faults()
    for rule in filter(None, (r.strip() for r in text.split(";"))):
        name, _, value = rule.partition("=")
        try:
            if name == "detect.raise":
                f.detect_raise |= _ints(value)
            elif name == "detect.stall":
                for part in value.split(","):
                    call, _, secs = part.partition(":")
                    f.detect_stall[int(call)] = float(secs or 2.0)
            elif name == "detect.nan":
                f.detect_nan |= _ints(value)
            elif name == "detect.outside":
                f.detect_outside |= _ints(value)
            elif name == "source.fail":
                start, _, count = value.partition("+")
                f.source_fail = (int(start), int(count or 1))
            elif name == "pool.fail":
                f.pool_fail = int(value)
            elif name == "write.fail":
                f.write_fail = int(value)
            else:
                raise ValueError("unknown rule")
        except ValueError:
            raise UsageError(f"env PTIM_FAULTS: cannot use rule {rule!r}") from None
    return f


def faults_from_env(env: Mapping[str, str] | None = None) -> Faults | None:
    """The configured faults, or None (the normal case)."""
    text = (os.environ if env is None else env).get("PTIM_FAULTS", "")
    return parse_faults(text) if text.strip() else None


class FaultyDetector:
    """Wraps a detector and misbehaves on the configured calls."""

    def __init__(self, inner, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults
        self._calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    @property
    def inner(self):
        """The wrapped detector (the second pass's crops are not counted as calls)."""
        return self._inner

    @property
    def lanes(self) -> int:
        """1: faults are numbered by call, and one frame's call at a time keeps that
        numbering the frames' order (the wrapped detector still spreads a frame's regions)."""
        return 1

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    def detect(self, image: np.ndarray) -> Detections:
        """The wrapped detector's answer, or the injected fault for this call."""
        injected = self._inject(image)
        return self._inner.detect(image) if injected is None else injected

    def detect_regions(self, image: np.ndarray, regions) -> Detections:
        """Like ``detect``: one call per frame, whatever the number of regions."""
        injected = self._inject(image)
        return self._inner.detect_regions(image, regions) if injected is None else injected

    def _inject(self, image: np.ndarray) -> Detections | None:
        """The fault for this call (raised, slept or returned), or None for a normal one."""
        with self._lock:
            self._calls += 1
            n = self._calls
        f = self._faults
        if n in f.detect_raise:
            raise RuntimeError(f"injected detector failure on call {n}")
        if n in f.detect_stall:
            time.sleep(f.detect_stall[n])
        if n in f.detect_nan:
            return Detections([[np.nan, 0, np.nan, 10]], np.zeros((1, 5, 2)), [0.9])
        if n in f.detect_outside:
            h, w = image.shape[:2]
            return Detections([[w + 10, h + 10, w + 50, h + 50]], np.zeros((1, 5, 2)), [0.9])
        return None


class FaultySource:
    """Wraps a source; reads in the configured range raise SourceReadError."""

    def __init__(self, inner, faults: Faults) -> None:
        self._inner = inner
        self._start, self._count = faults.source_fail or (0, 0)
        self._reads = 0

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def read(self):
        """The next frame, or the injected read failure."""
        from backend.sources import SourceReadError

        self._reads += 1
        if self._start <= self._reads < self._start + self._count:
            raise SourceReadError(f"injected read failure {self._reads}")
        return self._inner.read()

    def reopen(self) -> None:
        """Reopen the wrapped source (keeps its position when it is synthetic)."""
        reopen = getattr(self._inner, "reopen", None)
        if reopen is not None:
            reopen()

    def __enter__(self):
        self._inner.open()
        return self

    def __exit__(self, *exc) -> None:
        self._inner.close()


class FaultyWriter:
    """Wraps a recorder; ``write`` raises ENOSPC on the configured frame."""

    def __init__(self, inner, faults: Faults) -> None:
        self._inner = inner
        self._at = faults.write_fail
        self._n = 0

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def write(self, frame) -> None:
        """Write, or fail like a full disk."""
        self._n += 1
        if self._at is not None and self._n >= self._at:
            from backend.errors import OutputError

            err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise OutputError(f"{self._inner.path}: cannot write: {err.strerror}")
        self._inner.write(frame)


def failing_allocator(faults: Faults):
    """A pool allocator that raises MemoryError for the first ``pool_fail`` calls."""
    left = [faults.pool_fail]

    def alloc(shape, dtype):
        if left[0] > 0:
            left[0] -= 1
            raise MemoryError("injected allocation failure")
        return np.empty(shape, dtype)

    return alloc
