"""Maskers on a real face photo: coverage, block means, blur strength, image masks,
exemption, frame edges and the fail-closed frame."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.errors import UsageError
from backend.mask import MASK_TYPES, Masker, MaskImageError, mask_box, next_mask_type
from backend.types import Track
from config.schema import MaskSettings

Photo = tuple[np.ndarray, tuple[int, int, int, int]]

OPAQUE_BGR = (40, 200, 90)  # colour of the generated opaque mask picture


def track(box: tuple[float, ...] | np.ndarray, tid: int = 1, exempt: bool = False) -> Track:
    return Track(
        track_id=tid, box=np.asarray(box, np.float32), velocity=np.zeros(4, np.float32),
        score=0.9, exempt=exempt,
    )


def central(box: tuple[float, ...], frac: float = 0.6) -> tuple[slice, slice]:
    """Slices (rows, cols) of the central ``frac`` of an xyxy box."""
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * (1 - frac) / 2, (y2 - y1) * (1 - frac) / 2
    return (slice(math.ceil(y1 + my), math.floor(y2 - my)),
            slice(math.ceil(x1 + mx), math.floor(x2 - mx)))


def outside(shape: tuple[int, ...], box: np.ndarray, margin: float) -> np.ndarray:
    """Boolean (H, W): pixels farther than ``margin`` from xyxy ``box`` on some axis."""
    h, w = shape[:2]
    ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
    return ((xs < box[0] - margin) | (xs > box[2] + margin)
            | (ys < box[1] - margin) | (ys > box[3] + margin))


def write_png(path: Path, rgba: np.ndarray) -> str:
    assert cv2.imwrite(str(path), rgba)
    return str(path)


@pytest.fixture
def opaque_png(tmp_path: Path) -> str:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = OPAQUE_BGR
    rgba[..., 3] = 255
    return write_png(tmp_path / "opaque.png", rgba)


def gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)


def median_abs_laplacian(img: np.ndarray, region: tuple[slice, slice]) -> float:
    """Typical local detail: the median |Laplacian| (block edges are a minority)."""
    return float(np.median(np.abs(cv2.Laplacian(gray(img), cv2.CV_64F)[region])))


def detail_correlation(a: np.ndarray, b: np.ndarray, region: tuple[slice, slice]) -> float:
    """Normalised correlation of the fine detail (high-pass, sigma 2) of two images."""
    da = (gray(a) - cv2.GaussianBlur(gray(a), (0, 0), 2))[region]
    db = (gray(b) - cv2.GaussianBlur(gray(b), (0, 0), 2))[region]
    den = math.sqrt(float((da**2).sum() * (db**2).sum()))
    return float((da * db).sum() / den) if den > 0 else 0.0


# -- coverage for every type x shape ------------------------------------------------------


@pytest.mark.parametrize("feather", [0.0, 0.25])
@pytest.mark.parametrize("shape", ["ellipse", "box"])
@pytest.mark.parametrize("kind", list(MASK_TYPES))
def test_face_core_masked_and_far_pixels_untouched(
    astronaut: Photo, opaque_png: str, kind: str, shape: str, feather: float
) -> None:
    img, box = astronaut
    orig = img.copy()
    st = MaskSettings(type=kind, shape=shape, feather=feather, color=(10, 20, 250),
                      image_path=opaque_png)
    out = Masker(st).apply(img, [track(box)])
    assert out is img  # painted in place
    core = central(box)
    if kind == "solid":
        assert (img[core] == st.color).all()
    elif kind == "image":
        assert (img[core] == OPAQUE_BGR).all()
    else:
        changed = (img[core] != orig[core]).any(axis=2).mean()
        assert changed > 0.95
        assert median_abs_laplacian(img, core) < 0.25 * median_abs_laplacian(orig, core)
    m = mask_box(box, st.scale)
    band = feather * min(m[2] - m[0], m[3] - m[1])
    block = math.ceil(max(box[2] - box[0], box[3] - box[1]) / st.pixel_blocks)
    far = outside(img.shape, m, band + block + 2)
    assert far.sum() > 0.5 * far.size
    assert (img[far] == orig[far]).all()


@pytest.mark.parametrize("kind", ["solid", "pixelate", "blur"])
def test_box_shape_covers_the_whole_box(astronaut: Photo, kind: str) -> None:
    img, box = astronaut
    orig = img.copy()
    Masker(MaskSettings(type=kind, shape="box", scale=1.0)).apply(img, [track(box)])
    x1, y1, x2, y2 = box
    face = (slice(y1, y2), slice(x1, x2))
    if kind == "solid":
        assert (img[face] == 0).all()
    else:
        # every row and column of the face box was rewritten (no raw strip at an edge)
        changed = (img[face] != orig[face]).any(axis=2)
        assert changed.any(axis=0).all() and changed.any(axis=1).all()
        assert changed.mean() > 0.95


def test_feathered_edge_is_soft_outside_a_fully_covered_shape(astronaut: Photo) -> None:
    img, box = astronaut
    orig = img.copy()
    st = MaskSettings(type="solid", shape="box", color=(255, 255, 255), feather=0.2)
    Masker(st).apply(img, [track(box)])
    m = mask_box(box, st.scale)
    inside = (slice(math.ceil(m[1]), math.floor(m[3])), slice(math.ceil(m[0]), math.floor(m[2])))
    assert (img[inside] == 255).all()  # the whole mask box, not only the core
    # the band outside holds blended values: strictly between the photo and white
    row = int((m[1] + m[3]) / 2)
    band = 0.2 * min(m[2] - m[0], m[3] - m[1])
    xs = np.arange(math.ceil(m[2]) + 2, math.floor(m[2] + band) - 2)
    diff = img[row, xs].astype(int) - orig[row, xs].astype(int)
    assert (diff >= 0).all() and (diff > 0).any(axis=1).all()
    assert (img[row, xs] < 255).any(axis=1).all()
    # and the blend fades outward
    assert diff.sum(axis=1)[0] > diff.sum(axis=1)[-1]


# -- pixelate -----------------------------------------------------------------------------


def uniform_block_around(img: np.ndarray, y: int, x: int) -> tuple[slice, slice]:
    """The rectangle of pixels equal to img[y, x] reached along its row and column."""
    v = img[y, x]
    x0 = x
    while x0 > 0 and (img[y, x0 - 1] == v).all():
        x0 -= 1
    x1 = x
    while x1 + 1 < img.shape[1] and (img[y, x1 + 1] == v).all():
        x1 += 1
    y0 = y
    while y0 > 0 and (img[y0 - 1, x] == v).all():
        y0 -= 1
    y1 = y
    while y1 + 1 < img.shape[0] and (img[y1 + 1, x] == v).all():
        y1 += 1
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


@pytest.mark.parametrize("blocks", [4, 8, 12])
def test_pixelate_blocks_hold_the_block_mean(astronaut: Photo, blocks: int) -> None:
    img, box = astronaut
    orig = img.copy()
    Masker(MaskSettings(type="pixelate", pixel_blocks=blocks)).apply(img, [track(box)])
    x1, y1, x2, y2 = box
    size = math.ceil(max(x2 - x1, y2 - y1) / blocks)
    for y, x in [((y1 + y2) // 2, (x1 + x2) // 2), (y1 + 40, x1 + 30)]:
        cell = uniform_block_around(img, y, x)
        assert (img[cell] == img[y, x]).all()  # a uniform block
        assert cell[0].stop - cell[0].start == size and cell[1].stop - cell[1].start == size
        mean = orig[cell].reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(img[y, x], mean, atol=1.0)  # the mean, not a sample


def test_pixelate_fewer_blocks_is_coarser(astronaut: Photo) -> None:
    photo, box = astronaut
    core = central(box)
    colours = []
    for blocks in (4, 8, 16):
        img = photo.copy()
        Masker(MaskSettings(type="pixelate", shape="box", pixel_blocks=blocks)).apply(
            img, [track(box)]
        )
        colours.append(len(np.unique(img[core].reshape(-1, 3), axis=0)))
    assert colours[0] < colours[1] < colours[2]


# -- blur ---------------------------------------------------------------------------------


def test_stronger_blur_leaves_less_variance(astronaut: Photo) -> None:
    photo, box = astronaut
    core = central(box)
    variances = []
    for strength in (0.05, 0.2, 0.5, 1.0):
        img = photo.copy()
        Masker(MaskSettings(type="blur", blur_strength=strength)).apply(img, [track(box)])
        variances.append(float(img[core].astype(np.float64).var()))
    assert all(a > b for a, b in zip(variances, variances[1:], strict=False)), variances


def test_default_blur_destroys_face_detail(astronaut: Photo) -> None:
    img, box = astronaut
    orig = img.copy()
    Masker(MaskSettings(type="blur")).apply(img, [track(box)])
    core = central(box)
    assert median_abs_laplacian(img, core) < 0.1 * median_abs_laplacian(orig, core)
    assert abs(detail_correlation(orig, img, core)) < 0.1


# -- image mask ---------------------------------------------------------------------------


def test_image_mask_alpha_and_opaque_regions(astronaut: Photo, tmp_path: Path) -> None:
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[:, 50:, :3] = (255, 0, 255)
    rgba[:, 50:, 3] = 255  # right half opaque magenta, left half fully transparent
    path = write_png(tmp_path / "half.png", rgba)
    img, box = astronaut
    orig = img.copy()
    st = MaskSettings(type="image", shape="box", image_path=path)
    Masker(st).apply(img, [track(box)])
    m = mask_box(box, st.scale)
    cx, cy = int((m[0] + m[2]) / 2), int((m[1] + m[3]) / 2)
    side = min(m[2] - m[0], m[3] - m[1])  # the square picture is fitted to the short side
    q = int(side / 4)
    left = (slice(cy - 3, cy + 4), slice(cx - q - 3, cx - q + 4))
    right = (slice(cy - 3, cy + 4), slice(cx + q - 3, cx + q + 4))
    assert (img[left] == orig[left]).all()
    assert (img[right] == (255, 0, 255)).all()


def test_image_mask_keeps_aspect_and_centres(astronaut: Photo, tmp_path: Path) -> None:
    rgba = np.full((50, 200, 4), 255, np.uint8)
    rgba[..., :3] = OPAQUE_BGR  # a wide opaque strip
    path = write_png(tmp_path / "wide.png", rgba)
    img, box = astronaut
    orig = img.copy()
    st = MaskSettings(type="image", shape="box", image_path=path)
    Masker(st).apply(img, [track(box)])
    m = mask_box(box, st.scale)
    cx, cy = int((m[0] + m[2]) / 2), int((m[1] + m[3]) / 2)
    strip_h = (m[2] - m[0]) * 50 / 200  # fitted to the box width, aspect kept
    assert (img[cy, int(m[0]) + 3:int(m[2]) - 3] == OPAQUE_BGR).all()
    assert (img[int(cy - strip_h / 2) + 2, cx] == OPAQUE_BGR).all()
    above, below = int(cy - strip_h / 2) - 3, int(cy + strip_h / 2) + 3
    assert (img[above, cx] == orig[above, cx]).all()
    assert (img[below, cx] == orig[below, cx]).all()


@pytest.mark.parametrize(
    "make, cause",
    [
        (lambda d: d / "missing.png", "not found"),
        (lambda d: _write(d / "garbage.png", b"this is not a png" * 20), "not a readable image"),
        (lambda d: _write(d / "empty.png", b""), "not a readable image"),
        (lambda d: d, "folder"),
    ],
)
def test_bad_mask_image_raises_naming_the_path(tmp_path: Path, make, cause: str) -> None:
    path = make(tmp_path)
    with pytest.raises(MaskImageError) as err:
        Masker(MaskSettings(type="image", image_path=str(path)))
    msg = str(err.value)
    assert str(path) in msg and cause in msg and "\n" not in msg
    assert isinstance(err.value, UsageError)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_image_on_apply_settings_keeps_the_previous_settings(tmp_path: Path) -> None:
    masker = Masker(MaskSettings(type="solid"))
    with pytest.raises(MaskImageError, match="nope.png"):
        masker.apply_settings(MaskSettings(type="image", image_path=str(tmp_path / "nope.png")))
    assert masker.settings.type == "solid"
    with pytest.raises(MaskImageError, match="image_path is empty"):
        masker.apply_settings(MaskSettings(type="image"))


def test_image_path_only_loaded_for_the_image_type(tmp_path: Path) -> None:
    # a stale path in the config does not break the other mask types
    Masker(MaskSettings(type="pixelate", image_path=str(tmp_path / "gone.png")))


# -- exemption, frame edges, settings -----------------------------------------------------


def test_exempt_track_is_not_masked(astronaut: Photo) -> None:
    img, box = astronaut
    orig = img.copy()
    other = (20, 300, 80, 380)
    Masker(MaskSettings(type="solid")).apply(
        img, [track(box, 1, exempt=True), track(other, 2)]
    )
    from backend.mask.masker import complete_at_edges

    # the other face's mask, stretched to the left edge it nearly touches
    other_mask = complete_at_edges(mask_box(other, 1.3), img.shape[1], img.shape[0])
    far_from_other = outside(img.shape, other_mask, 3)  # the soft edge grows with the box
    assert (img[far_from_other] == orig[far_from_other]).all()
    assert (img[central(other)] == 0).all()


@pytest.mark.parametrize(
    "box",
    [
        (-40, 100, 60, 220),  # off the left edge
        (450, 100, 560, 220),  # off the right edge
        (200, -60, 300, 60),  # off the top
        (200, 450, 300, 570),  # off the bottom
        (-50, -50, 40, 60),  # off a corner
        (480, 480, 600, 600),
    ],
)
@pytest.mark.parametrize("kind", ["solid", "pixelate", "blur", "image"])
@pytest.mark.parametrize("feather", [0.0, 0.3])
def test_boxes_partly_outside_the_frame(
    astronaut: Photo, opaque_png: str, box: tuple[int, ...], kind: str, feather: float
) -> None:
    img, _ = astronaut
    orig = img.copy()
    st = MaskSettings(type=kind, shape="box", feather=feather, image_path=opaque_png)
    Masker(st).apply(img, [track(box)])
    h, w = img.shape[:2]
    rows, cols = central(box)
    vis = (slice(max(rows.start, 0), min(rows.stop, h)),
           slice(max(cols.start, 0), min(cols.stop, w)))
    if kind == "solid":
        assert (img[vis] == 0).all()
    elif kind == "image":
        assert (img[vis] == OPAQUE_BGR).all()
    else:
        assert (img[vis] != orig[vis]).any(axis=2).mean() > 0.9
    far = outside(img.shape, mask_box(box, st.scale), 40 + feather * 200)
    assert (img[far] == orig[far]).all()


@pytest.mark.parametrize(
    "box", [(-300, -300, -100, -100), (600, 100, 700, 200), (100, 900, 200, 1000), (5, 5, 5, 50)]
)
def test_boxes_outside_or_degenerate_change_nothing(astronaut: Photo, box: tuple) -> None:
    img, _ = astronaut
    orig = img.copy()
    Masker(MaskSettings(type="pixelate", feather=0.2)).apply(img, [track(box)])
    assert (img == orig).all()


def test_non_finite_box_fails_closed(astronaut: Photo) -> None:
    img, box = astronaut
    Masker(MaskSettings(fail_closed="solid", color=(1, 2, 3))).apply(
        img, [track((np.nan, 10, 50, 60))]
    )
    assert (img == (1, 2, 3)).all()


def test_apply_settings_switches_type_at_run_time(astronaut: Photo) -> None:
    masker = Masker(MaskSettings(type="pixelate"))
    masker.apply_settings(MaskSettings(type="solid", color=(0, 255, 0)))
    img, box = astronaut
    masker.apply(img, [track(box)])
    assert (img[central(box)] == (0, 255, 0)).all()


def test_mask_type_cycle_order() -> None:
    assert MASK_TYPES == ("pixelate", "solid", "blur", "image")
    assert [next_mask_type(t) for t in MASK_TYPES] == ["solid", "blur", "image", "pixelate"]
    assert next_mask_type("unknown") == "pixelate"


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
    ],
)
def test_bad_image_arguments_raise(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        Masker().apply(bad, [])
    with pytest.raises(ValueError):
        Masker().obscure_frame(bad)


def test_strided_frame_is_masked_in_place(astronaut: Photo) -> None:
    img, box = astronaut
    bgra = np.dstack([img, np.full(img.shape[:2], 7, np.uint8)])
    view = bgra[:, :, :3]  # pixels not packed: cv2 cannot draw into it directly
    Masker(MaskSettings(type="pixelate", shape="ellipse")).apply(view, [track(box)])
    assert (bgra[central(box)][..., :3] != img[central(box)]).any(axis=2).mean() > 0.95
    assert (bgra[..., 3] == 7).all()


# -- fail-closed frame --------------------------------------------------------------------


@pytest.mark.parametrize("style", ["pixelate", "solid", "blur"])
def test_obscure_frame_destroys_the_face(astronaut: Photo, style: str) -> None:
    img, box = astronaut
    orig = img.copy()
    out = Masker(MaskSettings(fail_closed=style, color=(9, 9, 9))).obscure_frame(img)
    assert out is img
    x1, y1, x2, y2 = box
    face = (slice(y1, y2), slice(x1, x2))
    # no local detail is left in the typical pixel, and what is left is not the face's
    assert median_abs_laplacian(img, face) <= 0.1 * median_abs_laplacian(orig, face)
    assert abs(detail_correlation(orig, img, face)) < 0.1
    # hardly any pixel keeps its value, anywhere in the frame
    assert (img == orig).all(axis=2).mean() < 0.05
    if style == "solid":
        assert (img == 9).all()
    else:
        # the face is reduced to a handful of colours or a smooth gradient
        assert len(np.unique(img[face].reshape(-1, 3), axis=0)) < (
            40 if style == "pixelate" else 20_000
        )


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (720, 1280), (1080, 607)])
def test_obscure_frame_any_size(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    for style in ("pixelate", "blur", "solid"):
        Masker(MaskSettings(fail_closed=style)).obscure_frame(img)
        assert img.shape == (*size, 3)


def test_a_face_cut_by_the_top_edge_is_masked_as_the_whole_face() -> None:
    from backend.mask.masker import FACE_ASPECT, complete_at_edges

    # the visible chin of a face entering from the top: a flat box against the edge
    box = np.array([400.0, 0.0, 560.0, 60.0])
    whole = complete_at_edges(box, 1280, 720)
    assert whole[3] == 60.0 and whole[1] < 0
    assert (whole[3] - whole[1]) == pytest.approx(FACE_ASPECT * 160)
    assert complete_at_edges(np.array([100.0, 100, 200, 300]), 1280, 720).tolist() == [
        100, 100, 200, 300]  # clear of the edges: unchanged
    right = complete_at_edges(np.array([1240.0, 300, 1280, 450]), 1280, 720)
    assert right[0] == 1240 and right[2] > 1280  # grown past the right edge only
    # the network's box of a cut face stops a few pixels short of the edge: still cut
    short = complete_at_edges(np.array([1250.0, 350, 1277, 394]), 1280, 720)
    assert short[0] == 1250 and short[2] > 1280
    assert complete_at_edges(np.array([1200.0, 350, 1227, 394]), 1280, 720)[2] == 1227
    # a box the network placed inside the frame, a gap short of the top: the cut part of
    # the face lies in the gap, so the box is stretched to the edge (more than 35%: left)
    near_top = complete_at_edges(np.array([16.0 + 100, 14, 62 + 100, 63]), 1280, 720)
    assert near_top[1] <= 0 and near_top[3] == 63
    assert complete_at_edges(np.array([300.0, 20, 346, 69]), 1280, 720)[1] == 20
    img = np.full((720, 1280, 3), 200, np.uint8)
    Masker(MaskSettings(type="solid", shape="ellipse", scale=1.0)).apply(
        img, [Track(1, box.astype(np.float32), np.zeros(4), 0.9)])
    # up to the edge the face is covered across its middle 70% (a flat ellipse is not)
    assert (img[0:30, 424:536] == 0).all()
