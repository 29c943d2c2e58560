"""Face detection: ONNX detectors and their onnxruntime sessions.

Public names: :class:`CenterFaceDetector` (frame in, ``Detections`` out),
:func:`create_session` / :class:`SessionInfo` (model loading and provider choice),
:class:`ModelError` (an unusable model file) and :func:`default_model_path`.
"""

from backend.detect import quantize as _quantize
from backend.detect import session as _session
from backend.detect.centerface import CenterFaceDetector
from backend.detect.session import (
    ModelError,
    SessionInfo,
    create_session,
    default_model_path,
    prepare_model,
)

# quantize needs the detector, which needs session: session gets the int8 recipe from here
_session.use_int8_recipe(_quantize.recipe_validated, _quantize.int8_bytes)

__all__ = [
    "CenterFaceDetector",
    "ModelError",
    "SessionInfo",
    "create_session",
    "default_model_path",
    "prepare_model",
]
