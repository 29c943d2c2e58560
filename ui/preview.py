"""The live preview: paints the newest masked frame, letterboxed, with track overlays.

The widget never copies pixels in Python: a BGR ``uint8`` array is wrapped in a ``QImage``
(``Format_BGR888``) that shares its buffer, and the array is kept referenced until the next
frame replaces it. ``show_frame`` only stores the frame and calls ``update()``; Qt merges
pending updates, so a burst of frames costs one paint.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import (
    QColor,
    QFont,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
)
from PyQt6.QtWidgets import QSizePolicy, QWidget

if TYPE_CHECKING:
    from backend.types import Track

ORIGINAL_LABEL = "ORIGINAL - preview only, never sent to outputs"
MASKED_LABEL = "MASKED OUTPUT"
EXEMPT_LABEL = "visible (click to mask)"

_BACKGROUND = QColor(18, 18, 20)
_PLACEHOLDER_TEXT = QColor(200, 200, 205)
_ORIGINAL_BAND = QColor(150, 30, 30)
_MASKED_BAND = QColor(30, 110, 60)
_EXEMPT_COLOR = QColor(255, 176, 0)
_BOX_COLOR = QColor(0, 200, 255)
_HOVER_COLOR = QColor(255, 255, 255)
_GAP = 6  # pixels between the two panes in side-by-side mode


def to_qimage(image: np.ndarray) -> QImage:
    """Wrap an (H, W, 3) BGR or (H, W) grey ``uint8`` array in a QImage without copying.

    The QImage shares the array's memory: keep the array alive (and unchanged) while the
    image is used. Arrays whose rows are not contiguous are copied once first.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
        image.ndim == 3 and image.shape[2] != 3
    ):
        raise ValueError(
            f"expected an (H, W, 3) BGR or (H, W) uint8 image, got {image.shape} {image.dtype}"
        )
    pixel = image.shape[2] if image.ndim == 3 else 1
    if image.strides[-1] != 1 or (image.ndim == 3 and image.strides[1] != pixel):
        image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    fmt = QImage.Format.Format_BGR888 if image.ndim == 3 else QImage.Format.Format_Grayscale8
    return QImage(image.data, w, h, image.strides[0], fmt)


def fit_rect(width: int, height: int, area: QRectF) -> QRectF:
    """The largest rect with aspect ``width:height`` centred in ``area`` (letterbox)."""
    if width <= 0 or height <= 0 or area.width() <= 0 or area.height() <= 0:
        return QRectF()
    scale = min(area.width() / width, area.height() / height)
    w, h = width * scale, height * scale
    return QRectF(
        area.x() + (area.width() - w) / 2.0, area.y() + (area.height() - h) / 2.0, w, h
    )


class PreviewWidget(QWidget):
    """Paints the latest masked frame (and, optionally, the original beside it).

    Signals:
        frame_clicked(float, float): a left click on the masked image, in frame pixels.
        painted(object): the ``tag`` given to ``show_frame``, once, when that frame is first
            painted; ``last_painted_frame_time`` then holds ``time.perf_counter()``.
    """

    frame_clicked = pyqtSignal(float, float)
    painted = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        """Create an empty preview showing the "No source" placeholder."""
        super().__init__(parent)
        # The whole rect is painted every time: skip Qt's background erase.
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 90)
        self._masked: np.ndarray | None = None
        self._original: np.ndarray | None = None
        self._masked_image: QImage | None = None
        self._original_image: QImage | None = None
        self._tracks: tuple[Track, ...] = ()
        self._tag: object = None
        self._tag_pending = False
        self._placeholder: str | None = "No source"
        self._show_original = False
        self._show_boxes = False
        self._hover: QPointF | None = None
        self._hover_track: int | None = None
        self.last_painted_frame_time: float | None = None
        font = QFont(self.font())
        font.setBold(True)
        self._label_font = font

    # -- state in ------------------------------------------------------------------------
    def show_frame(
        self,
        masked_bgr: np.ndarray,
        original_bgr: np.ndarray | None = None,
        tracks: Sequence[Track] = (),
        tag: object = None,
    ) -> None:
        """Show a new frame; painting happens later, once, in ``paintEvent``.

        ``masked_bgr`` (H, W, 3) uint8 BGR is what outputs receive; ``original_bgr`` (same
        size) is drawn only in side-by-side mode. The arrays are referenced, not copied:
        the caller must not write into them after handing them over. ``tag`` (a frame id
        or capture timestamp) comes back in ``painted`` when the frame is first painted.
        """
        self._masked_image = to_qimage(masked_bgr)
        self._masked = masked_bgr
        if self._show_original and original_bgr is not None:
            self._original_image = to_qimage(original_bgr)
            self._original = original_bgr
        else:
            # Not shown: do not keep raw pixels around.
            self._original_image = None
            self._original = None
        self._tracks = tuple(tracks)
        self._tag = tag
        self._tag_pending = True
        self._placeholder = None
        self._update_hover()
        self.update()

    def set_placeholder(self, text: str | None) -> None:
        """Show ``text`` (e.g. "Loading face detector...") instead of a frame; None clears.

        The current frame is dropped; the next ``show_frame`` replaces the message.
        """
        self._placeholder = text or None
        if text:
            self._masked = self._original = None
            self._masked_image = self._original_image = None
            self._tracks = ()
            self._tag_pending = False
        self.update()

    def set_show_original(self, on: bool) -> None:
        """Side by side: original on the left (preview only), masked output on the right."""
        self._show_original = bool(on)
        if not on:
            self._original = None
            self._original_image = None
        self.update()

    def set_show_boxes(self, on: bool) -> None:
        """Draw a thin outline around masked faces (exempt faces are always outlined)."""
        self._show_boxes = bool(on)
        self.update()

    @property
    def show_original(self) -> bool:
        """Whether side-by-side mode is on."""
        return self._show_original

    @property
    def show_boxes(self) -> bool:
        """Whether masked faces get an outline."""
        return self._show_boxes

    @property
    def placeholder(self) -> str | None:
        """The message shown instead of a frame, or None when a frame is shown."""
        return self._placeholder

    # -- geometry ------------------------------------------------------------------------
    def sizeHint(self) -> QSize:  # noqa: D102 - Qt override
        return QSize(960, 540)

    def _band_height(self) -> int:
        return self.fontMetrics().height() + 8

    def _layout(self) -> tuple[QRectF, QRectF, QRectF, QRectF]:
        """(original image rect, original band, masked image rect, masked band) in pixels.

        Rects are empty when not shown; bands exist only in side-by-side mode.
        """
        empty = QRectF()
        if self._masked is None:
            return empty, empty, empty, empty
        h, w = self._masked.shape[:2]
        full = QRectF(self.rect())
        if not (self._show_original and self._original is not None):
            return empty, empty, fit_rect(w, h, full), empty
        band = self._band_height()
        half = (full.width() - _GAP) / 2.0
        left = QRectF(0, band, half, full.height() - band)
        right = QRectF(half + _GAP, band, half, full.height() - band)
        oh, ow = self._original.shape[:2]
        orig_rect = fit_rect(ow, oh, left)
        masked_rect = fit_rect(w, h, right)
        orig_band = QRectF(orig_rect.x(), orig_rect.y() - band, orig_rect.width(), band)
        masked_band = QRectF(masked_rect.x(), masked_rect.y() - band, masked_rect.width(), band)
        return orig_rect, orig_band, masked_rect, masked_band

    def map_to_frame(self, pos: QPointF) -> tuple[float, float] | None:
        """Widget position -> frame pixel (x, y) on the masked image; None outside it."""
        if self._masked is None:
            return None
        rect = self._layout()[2]
        if rect.isEmpty() or not rect.contains(pos):
            return None
        h, w = self._masked.shape[:2]
        x = (pos.x() - rect.x()) * w / rect.width()
        y = (pos.y() - rect.y()) * h / rect.height()
        return min(max(x, 0.0), float(w)), min(max(y, 0.0), float(h))

    def _box_rect(self, box: np.ndarray, rect: QRectF) -> QRectF:
        h, w = self._masked.shape[:2]  # type: ignore[union-attr]
        sx, sy = rect.width() / w, rect.height() / h
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        r = QRectF(rect.x() + x1 * sx, rect.y() + y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy)
        return r.intersected(rect)

    # -- painting ------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent | None) -> None:  # noqa: D102 - Qt override
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), _BACKGROUND)
            if self._placeholder is not None or self._masked_image is None:
                self._paint_placeholder(painter)
                return
            orig_rect, orig_band, masked_rect, masked_band = self._layout()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            if self._original_image is not None and not orig_rect.isEmpty():
                painter.drawImage(orig_rect, self._original_image)
                self._paint_band(painter, orig_band, ORIGINAL_LABEL, _ORIGINAL_BAND)
                self._paint_band(painter, masked_band, MASKED_LABEL, _MASKED_BAND)
            painter.drawImage(masked_rect, self._masked_image)
            self._paint_tracks(painter, masked_rect)
            self._paint_hint(painter, masked_rect)
        finally:
            painter.end()
        if self._tag_pending:
            # Only the first paint of a frame counts: resizes repaint the same frame.
            self._tag_pending = False
            self.last_painted_frame_time = time.perf_counter()
            self.painted.emit(self._tag)

    def _paint_placeholder(self, painter: QPainter) -> None:
        painter.setPen(_PLACEHOLDER_TEXT)
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF(), 9.0) * 1.4)
        painter.setFont(font)
        painter.drawText(
            QRectF(self.rect()),
            Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
            self._placeholder or "No source",
        )

    def _paint_band(self, painter: QPainter, band: QRectF, text: str, color: QColor) -> None:
        if band.isEmpty():
            return
        painter.fillRect(band, color)
        painter.setPen(QColor(255, 255, 255))
        painter.setFont(self._label_font)
        metrics = painter.fontMetrics()
        elided = metrics.elidedText(text, Qt.TextElideMode.ElideRight, int(band.width()) - 8)
        painter.drawText(band, Qt.AlignmentFlag.AlignCenter, elided)

    def _paint_tracks(self, painter: QPainter, rect: QRectF) -> None:
        if not self._tracks:
            return
        painter.setFont(self._label_font)
        metrics = painter.fontMetrics()
        for track in self._tracks:
            box = self._box_rect(track.box, rect)
            if box.isEmpty():
                continue
            hovered = track.track_id == self._hover_track
            if track.exempt:
                painter.setPen(QPen(_EXEMPT_COLOR, 3 if hovered else 2))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(box)
                tw = metrics.horizontalAdvance(EXEMPT_LABEL) + 8
                th = metrics.height() + 4
                # Label above the box, or inside it when the box touches the top edge.
                ty = box.y() - th if box.y() - th >= rect.y() else box.y()
                # Keep the label inside the image when the box is near the right edge.
                tx = max(rect.x(), min(box.x(), rect.right() - tw))
                label = QRectF(tx, ty, tw, th)
                painter.fillRect(label, _EXEMPT_COLOR)
                painter.setPen(QColor(0, 0, 0))
                painter.drawText(label, Qt.AlignmentFlag.AlignCenter, EXEMPT_LABEL)
            elif self._show_boxes or hovered:
                pen = QPen(_HOVER_COLOR if hovered else _BOX_COLOR, 1)
                if hovered:
                    pen.setStyle(Qt.PenStyle.DashLine)
                painter.setPen(pen)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(box)

    def _paint_hint(self, painter: QPainter, rect: QRectF) -> None:
        if self._hover is None or not rect.contains(self._hover):
            return
        track = self._hovered_track()
        if track is None:
            text = "Click a face to keep it visible"
        elif track.exempt:
            text = "Click to mask this face again"
        else:
            text = "Click to keep this face visible"
        painter.setFont(self.font())
        metrics = painter.fontMetrics()
        tw, th = metrics.horizontalAdvance(text) + 16, metrics.height() + 8
        hint = QRectF(rect.center().x() - tw / 2, rect.bottom() - th - 8, tw, th)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRoundedRect(hint, 4, 4)
        painter.setPen(QColor(235, 235, 235))
        painter.drawText(hint, Qt.AlignmentFlag.AlignCenter, text)

    # -- mouse ---------------------------------------------------------------------------
    def _hovered_track(self) -> Track | None:
        for track in self._tracks:
            if track.track_id == self._hover_track:
                return track
        return None

    def _update_hover(self) -> bool:
        """Recompute the track under the mouse; True when that changed."""
        previous = self._hover_track
        self._hover_track = None
        point = self.map_to_frame(self._hover) if self._hover is not None else None
        if point is not None:
            x, y = point
            # Last drawn is on top: search in reverse so the topmost box wins.
            for track in reversed(self._tracks):
                x1, y1, x2, y2 = (float(v) for v in track.box[:4])
                if x1 <= x <= x2 and y1 <= y <= y2:
                    self._hover_track = track.track_id
                    break
        if previous == self._hover_track:
            return False
        if self._hover_track is None:
            self.unsetCursor()
        else:
            self.setCursor(Qt.CursorShape.PointingHandCursor)
        return True

    def mouseMoveEvent(self, event: QMouseEvent | None) -> None:  # noqa: D102 - Qt override
        if event is None:
            return
        rect = self._layout()[2]
        was_inside = self._hover is not None and rect.contains(self._hover)
        self._hover = event.position()
        inside = rect.contains(self._hover)
        # Repaint only when the hint or the highlighted face changes, not on every move.
        if self._update_hover() or inside != was_inside:
            self.update()

    def leaveEvent(self, event: object) -> None:  # noqa: D102 - Qt override
        self._hover = None
        self._hover_track = None
        self.update()

    def mousePressEvent(self, event: QMouseEvent | None) -> None:  # noqa: D102 - Qt override
        if event is None or event.button() != Qt.MouseButton.LeftButton:
            return
        point = self.map_to_frame(event.position())
        if point is not None:
            self.frame_clicked.emit(point[0], point[1])
