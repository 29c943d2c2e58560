"""File types shared by sources and sinks, so neither imports the other for them."""

from __future__ import annotations

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
)
"""Still-image extensions (lower case, with the dot) read as images and written as images."""
