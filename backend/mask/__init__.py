"""Masking: hide every tracked face in a BGR frame (solid, pixelate, blur, image).

Public names: ``Masker`` (apply / obscure_frame / apply_settings), ``MASK_TYPES`` (the UI's
cycle order), ``next_mask_type``, ``mask_box``, ``MaskImageError``, ``load_mask_image``.
"""

from backend.mask.image import MaskImageError, load_mask_image
from backend.mask.masker import MASK_TYPES, Masker, mask_box, next_mask_type

__all__ = [
    "MASK_TYPES",
    "MaskImageError",
    "Masker",
    "load_mask_image",
    "mask_box",
    "next_mask_type",
]
