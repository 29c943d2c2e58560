"""Frames written as image files, one atomic file per frame."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePath

import cv2
import numpy as np

from backend.errors import OutputError
from backend.formats import IMAGE_EXTENSIONS
from backend.sinks.checks import output_writable
from backend.types import Frame


def _encode_params(ext: str, jpeg_quality: int) -> list[int]:
    if ext in (".jpg", ".jpeg"):
        return [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    if ext == ".webp":
        return [cv2.IMWRITE_WEBP_QUALITY, jpeg_quality]
    if ext == ".png":
        return [cv2.IMWRITE_PNG_COMPRESSION, 3]  # fast; level 9 is 3x slower for ~5%
    return []


class ImageSink:
    """Write frames as images, each atomically (temporary file, then ``os.replace``).

    ``path`` with an image extension is a single output file: every write replaces it
    (the one-image case). Otherwise ``path`` is a folder (created when its parent exists)
    and each frame is written as its ``source_id`` (the input image's name, subfolders
    kept, never outside the folder), in the format of that name's extension. Frames whose
    ``source_id`` is not an image name (video frames) become ``<stem>_<index:06d>.png``.
    ``ext`` (e.g. ".png") forces one format for every file. ``frames_written`` counts.
    Failures raise OutputError naming the file and the cause; no partial file is left.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, ext: str | None = None, jpeg_quality: int = 95,
        inputs: tuple[str | os.PathLike[str], ...] = (),
    ) -> None:
        self.path = Path(path)
        self.single = self.path.suffix.lower() in IMAGE_EXTENSIONS
        if ext is not None:
            ext = ext.lower() if ext.startswith(".") else f".{ext.lower()}"
            if ext not in IMAGE_EXTENSIONS:
                raise OutputError(f"{self.path}: unsupported image type '{ext}'")
        self.ext = ext
        self.jpeg_quality = int(jpeg_quality)
        self.frames_written = 0
        output_writable(self.path, inputs=inputs, folder=not self.single)
        if not self.single:
            try:
                self.path.mkdir(exist_ok=True)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot create folder ({exc.strerror})") from None

    def target(self, frame: Frame) -> Path:
        """The file ``write(frame)`` writes."""
        if self.single:
            return self.path if self.ext is None else self.path.with_suffix(self.ext)
        rel = PurePath(frame.source_id.replace("\\", "/")) if frame.source_id else PurePath()
        if rel.is_absolute() or ".." in rel.parts:
            rel = PurePath(rel.name)  # never write outside the output folder
        if not rel.name:
            rel = PurePath("frame")
        if rel.suffix.lower() not in IMAGE_EXTENSIONS:
            rel = rel.with_name(f"{rel.stem or 'frame'}_{frame.index:06d}.png")
        if self.ext is not None:
            rel = rel.with_suffix(self.ext)
        return self.path / rel

    def write(self, frame: Frame) -> Path:
        """Encode and write one frame; returns the file written."""
        dest = self.target(frame)
        ext = dest.suffix.lower()
        try:
            ok, buf = cv2.imencode(ext, frame.image, _encode_params(ext, self.jpeg_quality))
        except cv2.error as exc:
            raise OutputError(f"{dest}: cannot encode image ({str(exc).strip()[-80:]})") from None
        if not ok:
            raise OutputError(f"{dest}: cannot encode image as {ext}")
        tmp = dest.with_name(f".{dest.stem}.ptim-tmp{dest.suffix}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            np.asarray(buf).tofile(tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise OutputError(f"{dest}: cannot write image ({exc.strerror or exc})") from None
        self.frames_written += 1
        return dest

    def close(self) -> None:
        """Nothing is buffered; present so every sink can be closed alike."""

    def abort(self) -> None:
        """Files already written stay (each is complete); nothing is pending."""
