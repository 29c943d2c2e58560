"""Disclosure: the visible "synthetic face" label, the files' metadata tag, the reminder.

The label policy (``output.disclosure_label``) is one switch for the whole process, set
by whoever owns the full settings (the ``process`` command, the app) and read by every
replacer when it draws; it is on until someone turns it off, and turning it off is logged
once per run.
"""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np

log = logging.getLogger("ptim.replace")

LABEL = "synthetic face"
CONSENT_REMINDER = ("Replace only the faces of people who agreed to it, and label what you "
                    "publish as synthetic.")
METADATA = {
    "comment": "PlayaTews Identity Masker: faces in this video were replaced with synthetic "
               "faces",
    "ptim_faces_replaced": "true",
}
"""Container tags of a file whose faces were replaced (mp4/mov need use_metadata_tags for
the custom key; ``comment`` is kept by every container)."""

_lock = threading.Lock()
_label = True
_said_off = False
_replacing = False


def set_label(enabled: bool, say: bool = True) -> None:
    """Turn the label on or off for this process; off is logged once per run (when
    ``say``: faces are being replaced)."""
    global _label, _said_off
    with _lock:
        _label = bool(enabled)
        say = say and not _label and not _said_off
        _said_off = _said_off or say
    if say:
        log.warning("the 'synthetic face' label is off (output.disclosure_label: false): "
                    "replaced faces are shown unlabelled")


def label_enabled() -> bool:
    """True when replaced faces get the visible label (the default)."""
    return _label


def note_replacing(active: bool) -> None:
    """Record whether the replace mask is in use (files opened while it is get the tag)."""
    global _replacing
    _replacing = bool(active)


def metadata() -> dict[str, str]:
    """Tags for a file being opened now: ``METADATA`` while replacing, else none."""
    return dict(METADATA) if _replacing else {}


def draw_label(image: np.ndarray) -> tuple[int, int, int, int]:
    """Draw ``LABEL`` near the bottom-left of (H, W, 3) uint8 BGR ``image`` in place.

    White text on a dark box, sized with the frame (readable from 240p to 4K). Returns the
    box drawn, (x0, y0, x1, y1).
    """
    h, w = image.shape[:2]
    scale = max(0.4, min(h, w * 9 / 16) / 720 * 0.9)
    thick = max(1, int(round(scale * 2)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(LABEL, font, scale, thick)
    pad = max(3, int(round(th * 0.35)))
    margin = max(4, int(round(min(h, w) * 0.02)))
    x0, y1 = margin, h - margin
    x1, y0 = min(w, x0 + tw + 2 * pad), max(0, y1 - th - base - 2 * pad)
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), (32, 32, 32), -1)
    cv2.putText(image, LABEL, (x0 + pad, y1 - pad - base), font, scale, (255, 255, 255),
                thick, cv2.LINE_AA)
    return x0, y0, x1, y1
