"""``open_source``: the one place that turns a user's input string into a Source."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from backend.errors import InputError
from backend.sources.base import Source
from backend.sources.camera import CameraSource
from backend.sources.images import ImageFileSource, ImageFolderSource, is_image_path
from backend.sources.synthetic import DemoSource
from backend.sources.video_file import VideoFileSource


def open_source(spec: str | os.PathLike[str], **kw: Any) -> Source:
    """Build (not open) the source for ``spec``; keyword arguments go to its constructor.

    ``camera:N`` -> CameraSource(N); ``demo`` or ``demo:<preset>`` -> DemoSource; an
    existing folder -> ImageFolderSource; a name ending in an image extension ->
    ImageFileSource; anything else -> VideoFileSource (which reports a missing or
    unreadable file on ``open()``). A malformed ``camera:`` spec raises InputError.
    """
    text = os.fspath(spec)
    if text.startswith("camera:"):
        m = re.fullmatch(r"camera:(\d+)", text)
        if not m:
            raise InputError(f"{text}: expected camera:N with N a camera number, e.g. camera:0")
        return CameraSource(int(m.group(1)), **kw)
    if text == "demo" or text.startswith("demo:"):
        return DemoSource(text.partition(":")[2] or "demo", **kw)
    path = Path(text)
    if path.is_dir():
        return ImageFolderSource(path, **kw)
    if is_image_path(path):
        return ImageFileSource(path, **kw)
    return VideoFileSource(path, **kw)
