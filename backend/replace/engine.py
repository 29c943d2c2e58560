"""The per-stream replacer: tracked faces in, replaced faces painted in place out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.replace import disclosure
from backend.replace.align import Alignment, LandmarkSmoother, align
from backend.replace.formats import FaceSource, PhotoSource, load_source
from backend.replace.merge import (
    core_coverage,
    covered,
    crop,
    face_ellipse,
    paste,
    rct,
    shape_mask,
)
from backend.types import Track
from config.schema import MaskSettings

log = logging.getLogger("ptim.replace")

MIN_COVERAGE = 0.6
"""A face whose final mask covers less of its eyes-to-mouth box than this is not hidden by
the new face: it falls back to the irreversible mask."""

EDGE_MARGIN = 0.0
"""A landmark this far (px) outside the frame means the face is cut off: it falls back."""

COVERED = 0.85
"""A face box this covered by another face's replacement (a second detection inside a
replaced face) counts as hidden: it is neither replaced again nor masked."""

LABEL_HOLD = 15
"""Frames the label stays after the last replaced face, so it does not flicker."""


@dataclass
class ReplaceCounts:
    """Faces replaced, and faces detected in their frame whose replacement failed so they
    were masked instead (process-wide, thread-safe)."""

    replaced: int = 0
    fell_back: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, replaced: int, fell_back: int) -> None:
        """Count one frame's faces."""
        with self._lock:
            self.replaced += replaced
            self.fell_back += fell_back

    def snapshot(self) -> tuple[int, int]:
        """(replaced, fell_back) so far."""
        with self._lock:
            return self.replaced, self.fell_back


COUNTS = ReplaceCounts()
"""Every replacer in the process adds here (the ``process`` summary line reads it)."""


class FaceReplacer:
    """Replaces tracked faces on BGR frames, one stream at a time.

    Built from ``MaskSettings`` (``replace_*`` keys); the source is loaded once per file
    (``load_source``). ``replace(image, tracks)`` paints every track it can in place and
    returns one bool per track: False means not replaced (no or stale landmarks, a face
    turned too far, cut by the frame edge, a model error, or a mask that does not cover
    the face), and the caller must mask that face irreversibly. Keeps per-track landmark
    smoothing, so one replacer serves one stream; ``reset()`` forgets it.
    """

    def __init__(self, settings: MaskSettings, source: FaceSource | None = None) -> None:
        self.settings = settings
        self.source = source or load_source(
            settings.replace_face, morph=settings.replace_morph,
            source_face=settings.source_face, recognition_model=settings.recognition_model)
        src = self.source
        self.points = src.points(settings.replace_template, settings.replace_coverage)
        ct = settings.replace_color_transfer
        self.color_transfer = src.color_transfer if ct == "auto" else ct
        self._ellipse = None if src.mask_from_model else face_ellipse(self.points, src.size)
        if isinstance(src, PhotoSource):
            src.face_for(self.points)  # a photo whose face cannot be aligned is refused now
        self._smoother = LandmarkSmoother()
        self._since_label = LABEL_HOLD + 1
        self.replaced = 0
        self.fell_back = 0
        self._errors_said: set[str] = set()

    def reset(self) -> None:
        """Forget the smoothed landmarks (a new stream or a seek)."""
        self._smoother.reset()

    def replace(self, image: np.ndarray, tracks: Sequence[Track],
                source: np.ndarray | None = None) -> list[bool]:
        """Replace ``tracks``' faces on (H, W, 3) uint8 BGR ``image`` in place, the faces
        read from ``source`` (the frame before anything was painted on ``image``; default
        ``image`` itself).

        Returns one bool per track (True = replaced). The caller masks the others, then
        calls ``draw_label``.
        """
        h, w = image.shape[:2]
        raw = {t.track_id: t.landmarks for t in tracks
               if t.landmarks is not None and not t.held_over}
        smooth = self._smoother.update(raw)
        size = self.source.size
        todo: list[tuple[int, Alignment]] = []
        # big faces first: a fragment detected inside one is then covered by its new face
        order = sorted(range(len(tracks)), key=lambda i: -float(
            (tracks[i].box[2] - tracks[i].box[0]) * (tracks[i].box[3] - tracks[i].box[1])))
        for i in order:
            t = tracks[i]
            lm = smooth.get(t.track_id)
            if lm is None:
                continue
            if (lm < -EDGE_MARGIN).any() or (lm[:, 0] > w - 1 + EDGE_MARGIN).any() or \
                    (lm[:, 1] > h - 1 + EDGE_MARGIN).any():
                continue
            al = align(lm, self.points, size)
            if al is not None:
                todo.append((i, al))
        done = [False] * len(tracks)
        pasted: list[tuple[int, int, np.ndarray]] = []
        if todo:
            crops = np.stack([crop(image if source is None else source, al.matrix, size)
                              for _, al in todo])
            faces, masks = self._run(crops)
            if faces is not None:
                for k, (i, al) in enumerate(todo):
                    if pasted and covered(tracks[i].box, pasted) >= COVERED:
                        done[i] = True
                        continue
                    res = self._merge(image, crops[k], faces[k],
                                      None if masks is None else masks[k], al)
                    if res is not None:
                        pasted.append(res)
                        done[i] = True
        for i, t in enumerate(tracks):
            if not done[i] and pasted and covered(t.box, pasted) >= COVERED:
                done[i] = True
        n_ok = sum(done)
        # counted as failed: faces detected in this frame (held-over and second-pass boxes
        # have no fresh landmarks and are masked as with every mask type)
        n_fail = sum(1 for i, t in enumerate(tracks) if t.track_id in raw and not done[i])
        self.replaced += n_ok
        self.fell_back += n_fail
        COUNTS.add(n_ok, n_fail)
        self._since_label = 0 if n_ok else self._since_label + 1
        return done

    def draw_label(self, image: np.ndarray) -> bool:
        """Draw the disclosure label when a face was replaced in this frame (the last
        ``replace`` call) or the ``LABEL_HOLD`` frames before, unless the label is off
        (``disclosure.set_label(False)``). Returns True when drawn."""
        if self._since_label <= LABEL_HOLD and disclosure.label_enabled():
            disclosure.draw_label(image)
            return True
        return False

    # -- internals ----------------------------------------------------------------------
    def _run(self, crops: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """New faces for (N, S, S, 3) uint8 crops; (None, None) when the model fails."""
        src = self.source
        if isinstance(src, PhotoSource):
            face = src.face_for(self.points)
            return np.broadcast_to(face, crops.shape).astype(np.float32), None
        x = crops.astype(np.float32) / 255.0
        try:
            if src.batch == 1 and len(x) > 1:  # a fixed batch of 1: one call per face
                parts = [src.run(x[k:k + 1]) for k in range(len(x))]
                faces = np.concatenate([p[0] for p in parts])
                masks = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
            else:
                faces, masks = src.run(x)
        except Exception as exc:  # noqa: BLE001 - every model error fails these faces closed
            from backend.errors import STATS, Category, Strategy

            reason = f"{src.path.name}: model run failed ({type(exc).__name__}: {exc})"
            reason = " ".join(reason.split())[:200]
            if reason not in self._errors_said:
                self._errors_said.add(reason)
                log.warning("%s; those faces are masked instead", reason)
            STATS.record(Category.PROCESSING, Strategy.FALLBACK, "replace.run", reason,
                         log_it=False)
            return None, None
        return faces, masks

    def _merge(self, image: np.ndarray, crop_u8: np.ndarray, face: np.ndarray,
               mask: np.ndarray | None, al: Alignment) -> tuple[int, int, np.ndarray] | None:
        """Shape the mask, match colours, paste one face back; None = not hidden."""
        st = self.settings
        if not np.isfinite(face).all() or (mask is not None and not np.isfinite(mask).all()):
            return None
        base = self._ellipse if mask is None else mask
        m = shape_mask(base, st.replace_erode, st.replace_blur)
        if core_coverage(m, self.points) < MIN_COVERAGE:
            return None
        face = np.clip(face, 0.0, 1.0)
        if self.color_transfer == "rct":
            face = rct(face, crop_u8.astype(np.float32) / 255.0, m)
        return paste(image, face, m, al.inverse(), st.replace_opacity)
