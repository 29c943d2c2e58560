"""The Source contract shared by cameras, video files, image folders and the demo.

A source is opened once, read frame by frame until ``read()`` returns None, and closed.
It is also a context manager and an iterator of frames. Sources are not thread-safe:
one capture thread owns a source.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from fractions import Fraction
from types import TracebackType

from backend.types import Frame

# Frames larger than this per side are refused: they would not fit the pipeline's buffers
# and no supported camera or common video format produces them.
MAX_SIDE = 8192


class SourceReadError(IOError):
    """A live source failed to deliver a frame; the caller may ``reopen()`` with backoff."""


class Source(abc.ABC):
    """A stream of BGR frames.

    Attributes, valid after ``open()``:
        name: short human-readable name (file name, ``camera 0``, ``demo:fast_motion``).
        is_live: True for sources that run in real time and never end by themselves
            (cameras, the looping demo): callers keep the newest frame and drop the rest.
        fps: nominal frame rate (frames per second), > 0.
        size: (width, height) of the frames; for image folders, of the first image.
        frame_count: number of frames when known in advance, else None.
        time_base: the stream's time base for files (a recorder can reuse it to keep
            exact timestamps), else None.

    ``read()`` returns the next ``Frame`` (image ``(H, W, 3)`` uint8 BGR, C-contiguous,
    ``timestamp`` in seconds from the start of the stream) or None at the end.
    ``open()`` raises ``backend.errors.InputError`` with one line naming the input and
    the cause.
    """

    name: str = ""
    is_live: bool = False
    fps: float = 30.0
    size: tuple[int, int] = (0, 0)
    frame_count: int | None = None
    time_base: Fraction | None = None

    @abc.abstractmethod
    def open(self) -> None:
        """Open the input; raise InputError (one line, names the input) when it cannot."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """Return the next frame, or None when the stream has ended."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the input. Safe to call more than once."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
