"""The control panel: source, outputs and settings controls generated from the schema.

Each setting control is built from its pydantic field (title -> label, description ->
tooltip, ge/le -> range), so ranges are declared once, in ``config.schema``. The panel never
applies anything itself: it emits ``settings_changed({dotted_key: value})`` and the app
validates, applies and calls ``set_settings`` back, which updates the controls under
``QSignalBlocker`` so no change loops back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo
from PyQt6.QtCore import QSignalBlocker, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from config.schema import Settings, parse_size

DEBOUNCE_MS = 150
INPUT_SIZES: tuple[str, ...] = ("auto", "320x192", "480x288", "640x384", "960x544")
VIDEO_FILTER = (
    "Video and images (*.mp4 *.mov *.mkv *.avi *.webm *.m4v *.mpg *.mpeg *.wmv "
    "*.jpg *.jpeg *.png *.bmp *.webp *.tif *.tiff);;All files (*)"
)
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp);;All files (*)"

# (section, group title, fields) in display order; only these fields get a control. A
# dotted field ("quality.model_quality") belongs to another section but reads best here.
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("detector", "Detector", ("min_face_px", "fine_period", "quality.model_quality",
                              "threshold", "input_size")),
    ("tracker", "Tracking", ("hold_frames", "smoothing")),
    (
        "mask",
        "Mask",
        ("type", "shape", "scale", "pixel_blocks", "blur_strength", "feather", "image_path",
         "color", "replace_face", "source_face", "recognition_model", "replace_morph",
         "replace_color_transfer", "replace_opacity"),
    ),
    ("output", "Output", ("keep_audio",)),
    ("performance", "Performance", ("memory_warning_mb", "memory_critical_mb")),
)

# Mask fields that only matter for one mask type: disabled for the others.
_MASK_TYPE_FIELDS = {
    "mask.pixel_blocks": "pixelate",
    "mask.blur_strength": "blur",
    "mask.image_path": "image",
    "mask.color": "solid",
    "mask.replace_face": "replace",
    "mask.source_face": "replace",
    "mask.recognition_model": "replace",
    "mask.replace_morph": "replace",
    "mask.replace_color_transfer": "replace",
    "mask.replace_opacity": "replace",
}
REPLACE_FILTER = ("Face models and photos (*.dfm *.onnx *.png *.jpg *.jpeg *.bmp *.webp);;"
                  "All files (*)")

# Spin boxes whose schema range would give a step that is useless to a person.
_SPIN_STEP = {"detector.min_face_px": (1.0, 0)}
# Detector fields that only apply while the schedule runs (model quality auto, size auto).
_SCHEDULE_FIELDS = ("detector.min_face_px", "detector.fine_period")
_SCHEDULE_OFF_TIP = ("Not applied: quality.model_quality or detector.input_size is set "
                     "explicitly (one whole-frame pass). Set both to auto to use it.")

_INVALID_STYLE = "border: 1px solid #d03030;"


def field_bounds(field: FieldInfo) -> tuple[float | None, float | None]:
    """(ge, le) declared on a pydantic field (gt/lt count as bounds too), None when open."""
    lo: float | None = None
    hi: float | None = None
    for meta in field.metadata:
        for name in ("ge", "gt"):
            value = getattr(meta, name, None)
            if value is not None:
                lo = value
        for name in ("le", "lt"):
            value = getattr(meta, name, None)
            if value is not None:
                hi = value
    return lo, hi


def section_field(section: str, name: str) -> FieldInfo:
    """The pydantic FieldInfo of ``section.name`` in ``Settings``."""
    model = Settings.model_fields[section].annotation
    assert isinstance(model, type)
    return model.model_fields[name]


def _float_step(lo: float, hi: float) -> tuple[float, int]:
    """A spin step of about 1/100 of the range, rounded to a power of ten, and decimals."""
    span = max(hi - lo, 1e-9)
    step = 10.0 ** (math.floor(math.log10(span)) - 1)
    decimals = max(2, -math.floor(math.log10(step)))
    return step, decimals


def _bgr_to_qcolor(bgr: Sequence[int]) -> QColor:
    b, g, r = (int(c) for c in bgr)
    return QColor(r, g, b)


@dataclass
class _Binding:
    """One setting control: how to write a value into it and how to read it back."""

    key: str
    widget: QWidget
    row: QWidget
    set_value: Callable[[Any], None]
    get_value: Callable[[], Any]


class ControlPanel(QWidget):
    """Source, outputs and settings controls, meant for a dock.

    Signals:
        settings_changed(dict): ``{dotted_key: value}`` after a user edit (spin edits are
            debounced ~150 ms; combos, checkboxes, file and colour choices go at once).
        source_requested(str): a source spec the user picked: ``camera:N``, ``demo``, a
            file path or a folder path.
        record_toggled(bool): the Record button was pressed (True = start recording).
        virtual_camera_toggled(bool): the Virtual camera box was ticked or cleared.
    """

    settings_changed = pyqtSignal(dict)
    source_requested = pyqtSignal(str)
    record_toggled = pyqtSignal(bool)
    virtual_camera_toggled = pyqtSignal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        """Build every control with the schema's defaults."""
        super().__init__(parent)
        self._bindings: dict[str, _Binding] = {}
        self._pending: dict[str, Any] = {}
        self._color: tuple[int, int, int] = (0, 0, 0)
        self._models_dir = ""  # where the replacement picker opens (mask.replace_models_dir)
        self._size_value = ""
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._on_debounce_timeout)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self._build_source_group())
        layout.addWidget(self._build_outputs_group())
        for section, title, fields in SECTIONS:
            layout.addWidget(self._build_section(section, title, fields))
        layout.addStretch(1)

        # A dock can be short: scroll rather than squash the controls.
        scroll = QScrollArea(self)
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setMinimumWidth(content.sizeHint().width() + 20)
        self.set_settings(Settings())

    # -- public API ----------------------------------------------------------------------
    def set_settings(self, settings: Settings) -> None:
        """Show ``settings`` in every control without emitting ``settings_changed``."""
        for key, binding in self._bindings.items():
            section, name = key.split(".", 1)
            value = getattr(getattr(settings, section), name)
            with QSignalBlocker(binding.widget):
                binding.set_value(value)
        self._models_dir = settings.mask.replace_models_dir
        self._update_mask_rows(settings.mask.type)
        self._update_schedule_rows()

    def control(self, key: str) -> QWidget:
        """The control bound to a dotted settings key (for tests and focus handling)."""
        return self._bindings[key].widget

    def keys(self) -> list[str]:
        """Dotted keys of every setting that has a control."""
        return list(self._bindings)

    def set_sources(self, sources: Sequence[tuple[str, str]]) -> None:
        """Fill the source list with ``(spec, label)`` pairs, keeping the current choice."""
        current = self.current_source()
        with QSignalBlocker(self._source_combo):
            self._source_combo.clear()
            for spec, label in sources:
                self._source_combo.addItem(label, spec)
                self._source_combo.setItemData(
                    self._source_combo.count() - 1, spec, Qt.ItemDataRole.ToolTipRole
                )
        if current:
            self.set_current_source(current)

    def set_current_source(self, spec: str) -> None:
        """Select ``spec`` in the list (added, labelled by its file name, when missing)."""
        with QSignalBlocker(self._source_combo):
            index = self._source_combo.findData(spec)
            if index < 0:
                label = os.path.basename(spec.rstrip("/\\")) or spec
                self._source_combo.addItem(label, spec)
                index = self._source_combo.count() - 1
            self._source_combo.setCurrentIndex(index)

    def current_source(self) -> str:
        """The spec selected in the source list ("" when empty)."""
        data = self._source_combo.currentData()
        return str(data) if data is not None else ""

    def set_recording(self, on: bool, elapsed_s: float = 0.0) -> None:
        """Show whether recording is on and for how long."""
        with QSignalBlocker(self._record_button):
            self._record_button.setChecked(on)
        if on:
            total = int(elapsed_s)
            h, rem = divmod(total, 3600)
            m, s = divmod(rem, 60)
            clock = f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
            self._record_button.setText(f"Stop recording  {clock}")
            self._record_button.setStyleSheet("color: #c02020; font-weight: bold;")
        else:
            self._record_button.setText("Record")
            self._record_button.setStyleSheet("")

    def set_virtual_camera_state(self, on: bool, message: str = "") -> None:
        """Show whether the virtual camera is on, with an optional message (e.g. why not)."""
        with QSignalBlocker(self._vcam_check):
            self._vcam_check.setChecked(on)
        self._vcam_message.setText(message)
        self._vcam_message.setVisible(bool(message))

    def open_file_dialog(self) -> None:
        """Ask for a video or image file and request it as the source."""
        path, _ = QFileDialog.getOpenFileName(self, "Open video or image", "", VIDEO_FILTER)
        if path:
            self.source_requested.emit(path)

    def open_folder_dialog(self) -> None:
        """Ask for a folder of images and request it as the source."""
        path = QFileDialog.getExistingDirectory(self, "Open image folder")
        if path:
            self.source_requested.emit(path)

    @property
    def record_button(self) -> QPushButton:
        """The checkable Record button."""
        return self._record_button

    @property
    def virtual_camera_check(self) -> QCheckBox:
        """The Virtual camera checkbox."""
        return self._vcam_check

    @property
    def source_combo(self) -> QComboBox:
        """The source list."""
        return self._source_combo

    # -- groups --------------------------------------------------------------------------
    def _build_source_group(self) -> QGroupBox:
        box = QGroupBox("Source")
        layout = QVBoxLayout(box)
        self._source_combo = QComboBox()
        self._source_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self._source_combo.setMinimumContentsLength(18)
        self._source_combo.setToolTip("Camera, demo clip or the file or folder opened last.")
        self._source_combo.activated.connect(self._on_source_combo_activated)
        layout.addWidget(self._source_combo)
        buttons = QHBoxLayout()
        open_file = QPushButton("Open file...")
        open_file.setToolTip("Play a video file or a single image.")
        open_file.clicked.connect(self.open_file_dialog)
        open_folder = QPushButton("Open folder...")
        open_folder.setToolTip("Play a folder of images in name order.")
        open_folder.clicked.connect(self.open_folder_dialog)
        buttons.addWidget(open_file)
        buttons.addWidget(open_folder)
        layout.addLayout(buttons)
        return box

    def _build_outputs_group(self) -> QGroupBox:
        box = QGroupBox("Outputs")
        layout = QVBoxLayout(box)
        self._record_button = QPushButton("Record")
        self._record_button.setCheckable(True)
        self._record_button.setToolTip("Record the masked output to a file (R).")
        self._record_button.clicked.connect(self._on_record_button_clicked)
        layout.addWidget(self._record_button)
        self._vcam_check = QCheckBox("Virtual camera")
        self._vcam_check.setToolTip("Send the masked output to a virtual camera device.")
        self._vcam_check.clicked.connect(self._on_vcam_check_clicked)
        layout.addWidget(self._vcam_check)
        self._vcam_message = QLabel()
        self._vcam_message.setWordWrap(True)
        self._vcam_message.setStyleSheet("color: #b06000;")
        self._vcam_message.setVisible(False)
        layout.addWidget(self._vcam_message)
        return box

    def _build_section(self, section: str, title: str, fields: Sequence[str]) -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        custom: dict[str, Callable[[str, FieldInfo], _Binding]] = {
            "detector.input_size": self._make_size_combo,
            "mask.image_path": self._make_image_path,
            "mask.color": self._make_color_button,
            "mask.replace_face": self._make_replace_path,
            "mask.source_face": self._make_replace_path,
            "mask.recognition_model": self._make_replace_path,
        }
        for entry in fields:
            key = entry if "." in entry else f"{section}.{entry}"
            field_section, name = key.split(".", 1)
            field = section_field(field_section, name)
            make = custom.get(key, self._make_control)
            binding = make(key, field)
            tooltip = field.description or ""
            binding.widget.setToolTip(tooltip)
            label = QLabel(field.title or name)
            label.setToolTip(tooltip)
            label.setBuddy(binding.widget)
            form.addRow(label, binding.row)
            self._bindings[key] = binding
        return box

    # -- control factories ---------------------------------------------------------------
    def _make_control(self, key: str, field: FieldInfo) -> _Binding:
        """A control chosen by the field's type: Literal, bool, int, float or str."""
        ann = field.annotation
        if get_origin(ann) is Literal:
            combo = QComboBox()
            for choice in get_args(ann):
                combo.addItem(str(choice), choice)
            combo.currentIndexChanged.connect(
                lambda _i, k=key, c=combo: self._emit_now(k, c.currentData())
            )

            def set_combo(value: Any, c: QComboBox = combo) -> None:
                c.setCurrentIndex(max(c.findData(value), 0))

            return _Binding(key, combo, combo, set_combo, combo.currentData)
        if ann is bool:
            check = QCheckBox()
            check.toggled.connect(lambda on, k=key: self._emit_now(k, bool(on)))
            return _Binding(key, check, check, lambda v, c=check: c.setChecked(bool(v)),
                            check.isChecked)
        if ann is int:
            lo, hi = field_bounds(field)
            spin = QSpinBox()
            spin.setRange(int(lo) if lo is not None else -(2**31), int(hi) if hi is not None
                          else 2**31 - 1)
            spin.valueChanged.connect(lambda v, k=key: self._emit_later(k, int(v)))
            return _Binding(key, spin, spin, lambda v, s=spin: s.setValue(int(v)), spin.value)
        if ann is float:
            lo, hi = field_bounds(field)
            lo_f = float(lo) if lo is not None else -1e9
            hi_f = float(hi) if hi is not None else 1e9
            dspin = QDoubleSpinBox()
            step, decimals = _SPIN_STEP.get(key) or _float_step(lo_f, hi_f)
            dspin.setDecimals(decimals)
            dspin.setRange(lo_f, hi_f)
            dspin.setSingleStep(step)
            dspin.valueChanged.connect(lambda v, k=key: self._emit_later(k, float(v)))
            return _Binding(key, dspin, dspin, lambda v, s=dspin: s.setValue(float(v)),
                            dspin.value)
        if ann is str:
            edit = QLineEdit()
            # Free text commits on Enter or focus-out: a half-typed value is not a setting.
            edit.editingFinished.connect(lambda k=key, e=edit: self._on_text_committed(k, e))
            return _Binding(key, edit, edit, lambda v, e=edit: e.setText(str(v)), edit.text)
        raise TypeError(f"no control for {key} of type {ann!r}")

    def _make_size_combo(self, key: str, field: FieldInfo) -> _Binding:
        combo = QComboBox()
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        combo.addItems(INPUT_SIZES)
        combo.lineEdit().setPlaceholderText("auto or WIDTHxHEIGHT")
        # A preset picked from the list goes at once; typed text when Enter or focus-out.
        combo.activated.connect(lambda _i, c=combo: self._on_size_combo_committed(key, c))
        combo.lineEdit().editingFinished.connect(
            lambda c=combo: self._on_size_combo_committed(key, c)
        )

        def set_size(value: Any, c: QComboBox = combo) -> None:
            self._size_value = str(value)
            c.setCurrentText(self._size_value)
            c.setStyleSheet("")

        return _Binding(key, combo, combo, set_size, combo.currentText)

    def _make_image_path(self, key: str, field: FieldInfo) -> _Binding:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        edit = QLineEdit()
        edit.setPlaceholderText("No image")
        edit.editingFinished.connect(lambda k=key, e=edit: self._on_text_committed(k, e))
        browse = QPushButton("Browse...")
        browse.setToolTip("Choose the image that covers each face.")
        browse.clicked.connect(lambda _c=False, k=key, e=edit: self._on_browse_clicked(k, e))
        layout.addWidget(edit, 1)
        layout.addWidget(browse)
        self._image_browse = browse
        return _Binding(key, edit, row, lambda v, e=edit: e.setText(str(v)), edit.text)

    def _make_replace_path(self, key: str, field: FieldInfo) -> _Binding:
        """A path with a picker that opens in the remembered models folder."""
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        edit = QLineEdit()
        edit.setPlaceholderText("demo, or a .dfm / .onnx model or face photo"
                                if key == "mask.replace_face" else "none")
        edit.editingFinished.connect(lambda k=key, e=edit: self._on_text_committed(k, e))
        browse = QPushButton("Browse...")
        browse.setToolTip(field.description or "")
        browse.clicked.connect(
            lambda _c=False, k=key, e=edit: self._on_replace_browse_clicked(k, e))
        layout.addWidget(edit, 1)
        layout.addWidget(browse)
        if key == "mask.replace_face":
            self._replace_browse = browse
        return _Binding(key, edit, row, lambda v, e=edit: e.setText(str(v)), edit.text)

    def _make_color_button(self, key: str, field: FieldInfo) -> _Binding:
        button = QPushButton()
        button.setToolTip(field.description or "")
        button.clicked.connect(lambda _c=False, k=key: self._on_color_button_clicked(k))

        def set_color(value: Any, b: QPushButton = button) -> None:
            self._color = tuple(int(c) for c in value)  # type: ignore[assignment]
            qc = _bgr_to_qcolor(self._color)
            text_color = "#000" if qc.lightness() > 128 else "#fff"
            b.setText("{}, {}, {}".format(*self._color))  # B, G, R as the label says
            b.setStyleSheet(f"background-color: {qc.name()}; color: {text_color};")

        return _Binding(key, button, button, set_color, lambda: self._color)

    # -- emitting ------------------------------------------------------------------------
    def _emit_now(self, key: str, value: Any) -> None:
        """Emit at once, together with any debounced edits still waiting."""
        self._pending[key] = value
        self._debounce.stop()
        self._on_debounce_timeout()

    def _emit_later(self, key: str, value: Any) -> None:
        """Collect an edit and emit once the user pauses for DEBOUNCE_MS."""
        self._pending[key] = value
        self._debounce.start()

    def _on_debounce_timeout(self) -> None:
        if not self._pending:
            return
        changes, self._pending = self._pending, {}
        if "mask.type" in changes:
            self._update_mask_rows(str(changes["mask.type"]))
        if "quality.model_quality" in changes or "detector.input_size" in changes:
            self._update_schedule_rows()
        self.settings_changed.emit(changes)

    def flush(self) -> None:
        """Emit debounced edits now (e.g. before the app saves settings on exit)."""
        self._debounce.stop()
        self._on_debounce_timeout()

    def _update_mask_rows(self, mask_type: str) -> None:
        for key, wanted in _MASK_TYPE_FIELDS.items():
            binding = self._bindings.get(key)
            if binding is not None:
                binding.row.setEnabled(mask_type == wanted)

    def _update_schedule_rows(self) -> None:
        """Enable min face and fine period only while they apply (both overrides auto)."""
        quality = self._bindings.get("quality.model_quality")
        size = self._bindings.get("detector.input_size")
        on = (quality is None or quality.get_value() == "auto") and (
            size is None or str(size.get_value()).strip().lower() in ("", "auto"))
        for key in _SCHEDULE_FIELDS:
            binding = self._bindings.get(key)
            if binding is None:
                continue
            binding.row.setEnabled(on)
            field = section_field(*key.split(".", 1))
            binding.widget.setToolTip((field.description or "") if on else _SCHEDULE_OFF_TIP)

    # -- slots ---------------------------------------------------------------------------
    def _on_text_committed(self, key: str, edit: QLineEdit) -> None:
        if edit.isModified():
            edit.setModified(False)
            self._emit_now(key, edit.text())

    def _on_size_combo_committed(self, key: str, combo: QComboBox) -> None:
        text = combo.currentText().strip().lower()
        try:
            parse_size(text)
        except ValueError as exc:
            combo.setStyleSheet(_INVALID_STYLE)
            combo.setToolTip(f"{exc}")
            return
        combo.setStyleSheet("")
        combo.setToolTip(section_field("detector", "input_size").description or "")
        # Enter fires both editingFinished and activated: emit the value once.
        if text != self._size_value:
            self._size_value = text
            self._emit_now(key, text)

    def _on_browse_clicked(self, key: str, edit: QLineEdit) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose mask image", edit.text(), IMAGE_FILTER)
        if path:
            edit.setText(path)
            self._emit_now(key, path)

    def pick_replace_file(self, key: str, path: str) -> None:
        """Use ``path`` for ``key`` as if picked, remembering its folder (tests call this)."""
        binding = self._bindings[key]
        binding.set_value(path)
        self._pending["mask.replace_models_dir"] = os.path.dirname(path)  # one emit for both
        self._emit_now(key, path)

    def _on_replace_browse_clicked(self, key: str, edit: QLineEdit) -> None:
        start = edit.text() if os.path.sep in edit.text() else self._models_dir
        path, _ = QFileDialog.getOpenFileName(self, "Choose replacement face", start,
                                              REPLACE_FILTER)
        if path:
            self.pick_replace_file(key, path)

    def _on_color_button_clicked(self, key: str) -> None:
        color = QColorDialog.getColor(_bgr_to_qcolor(self._color), self, "Solid mask colour")
        if color.isValid():
            bgr = (color.blue(), color.green(), color.red())
            self._bindings[key].set_value(bgr)
            self._emit_now(key, bgr)

    def _on_source_combo_activated(self, index: int) -> None:
        spec = self._source_combo.itemData(index)
        if spec:
            self.source_requested.emit(str(spec))

    def _on_record_button_clicked(self, checked: bool) -> None:
        self.record_toggled.emit(bool(checked))

    def _on_vcam_check_clicked(self, checked: bool) -> None:
        self.virtual_camera_toggled.emit(bool(checked))
