"""A real face photo that a dependency ships: scikit-image's public-domain astronaut."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# The face in skimage.data.astronaut() (512x512): CenterFace scores it 0.93 at
# (181.5, 58.2, 269.9, 177.8); checked by eye on a drawn rectangle (hairline to chin).
ASTRONAUT_FACE_BOX: tuple[int, int, int, int] = (182, 58, 270, 178)


@lru_cache(maxsize=1)
def _astronaut_bgr() -> np.ndarray:
    import cv2
    from skimage import data

    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    img.setflags(write=False)
    return img


def astronaut() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Return (a writable BGR copy of the astronaut photo, its face box xyxy)."""
    return _astronaut_bgr().copy(), ASTRONAUT_FACE_BOX
