"""Just enough of the MP4/MOV box structure to say why FFmpeg refused a file.

FFmpeg answers a recording cut off before its index was written ("moov atom not found")
and a codec it has no decoder for with generic errors; these read the boxes themselves so
the one error line can say what happened. Only box headers and the index are read.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

# Top-level boxes an MP4/MOV file may start with (ISO/IEC 14496-12 and QuickTime).
_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot",
                          b"uuid", b"styp"})
_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")
_MAX_INDEX = 64 * 2**20  # a moov larger than this is not read (real ones are KB to a few MB)


@dataclass(frozen=True, slots=True)
class Layout:
    """What the top level of a file says: ``boxes`` are the top-level box types in order."""

    boxes: tuple[str, ...]
    truncated: bool  # the last box claims more bytes than the file has

    @property
    def missing_index(self) -> bool:
        """An MP4/MOV file with media but no index (moov): cut off while being written."""
        return "moov" not in self.boxes and ("mdat" in self.boxes or "ftyp" in self.boxes)


def _header(data: bytes, pos: int, end: int, to_end: int | None = None
            ) -> tuple[bytes, int, int] | None:
    """(type, payload start, box end) of the box at ``pos`` in ``data[:end]``, or None.

    A size of 0 means "up to the end of the enclosing space": ``to_end`` (default ``end``).
    """
    if pos + 8 > end:
        return None
    size, kind = struct.unpack_from(">I4s", data, pos)
    start = pos + 8
    if size == 1:
        if pos + 16 > end:
            return None
        size = struct.unpack_from(">Q", data, pos + 8)[0]
        start = pos + 16
    elif size == 0:
        size = (end if to_end is None else to_end) - pos
    if size < start - pos:
        return None
    return kind, start, pos + size


def layout(path: str | os.PathLike[str]) -> Layout | None:
    """The top-level boxes of an MP4/MOV file, or None when it is not one (or unreadable)."""
    boxes: list[str] = []
    with contextlib.suppress(OSError), open(path, "rb") as f:
        total = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < total:
            f.seek(pos)
            head = f.read(16)
            box = _header(head, 0, len(head), total - pos)
            if box is None or (not boxes and box[0] not in _FIRST_BOXES):
                break
            boxes.append(box[0].decode("latin-1"))
            if pos + box[2] > total:
                return Layout(tuple(boxes), truncated=True)
            pos += box[2]
        return Layout(tuple(boxes), truncated=False) if boxes else None
    return None


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    pos = start
    while (box := _header(data, pos, end)) is not None and box[2] <= end:
        yield box
        pos = box[2]


def video_fourcc(path: str | os.PathLike[str]) -> str | None:
    """The sample entry type (e.g. ``avc1``, ``hvc1``) of the first video track, or None."""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        total = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < total:
            f.seek(pos)
            head = f.read(16)
            box = _header(head, 0, len(head), total - pos)
            if box is None:
                return None
            if box[0] == b"moov":
                if box[2] > _MAX_INDEX:
                    return None
                f.seek(pos)
                return _fourcc_in_moov(f.read(box[2]))
            pos += box[2]
    return None


def _fourcc_in_moov(moov: bytes) -> str | None:
    for kind, start, end in _children(moov, 8, len(moov)):
        if kind == b"trak":
            found = _fourcc_in_trak(moov, start, end)
            if found:
                return found
    return None


def _fourcc_in_trak(data: bytes, start: int, end: int) -> str | None:
    video, entry = False, None
    stack = [(start, end)]
    while stack:
        s, e = stack.pop()
        for kind, cs, ce in _children(data, s, e):
            if kind == b"hdlr" and ce - cs >= 12:
                video = data[cs + 8:cs + 12] == b"vide"  # version/flags, pre_defined, type
            elif kind == b"stsd" and ce - cs >= 16:
                entry = data[cs + 12:cs + 16]  # version/flags, count, entry size, entry type
            elif kind in _CONTAINERS:
                stack.append((cs, ce))
    if video and entry:
        text = entry.decode("latin-1")
        return text if text.isprintable() else entry.hex()
    return None
