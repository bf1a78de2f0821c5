# mypy: disallow-untyped-calls=False
"""Pure analysis functions on tiny synthetic volumes built here (no DICOM, no phantom)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from workers.analysis.analyze import StageTimer, analyze_images
from workers.analysis.anatomy import WorkingImages, body_mask, locate_femurs
from workers.analysis.oedema import RobustStats, clean_mask, confirm_by_t1, lesion_boundary
from workers.analysis.params import AnalysisParameters
from workers.analysis.preparation import (
    Block,
    axis_aligned_grid,
    block_coordinates,
    resample_onto,
    to_array,
)

PARAMS = AnalysisParameters()
HEAD_X = 90.0  # |x| of the head centres (LPS mm)
HEAD_R = 24.0


def _grid(size: tuple[int, int, int], spacing: tuple[float, float, float], direction: tuple[float, ...],
          centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> sitk.Image:
    """An empty float32 image of ``size`` whose centre sits at ``centre`` (LPS)."""
    img = sitk.Image(list(size), sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    d = np.asarray(direction).reshape(3, 3)
    half = (np.asarray(size) - 1) / 2 * np.asarray(spacing)
    img.SetOrigin(tuple(float(v) for v in np.asarray(centre) - d @ half))
    return img


CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0)  # rows run to patient left, columns down
CORONAL_FEET_FIRST = (-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0)  # turned 180 degrees in plane


def _hips(grid: sitk.Image, oedema_side: str | None) -> tuple[sitk.Image, sitk.Image]:
    """A body of muscle and fat with two femoral heads (cortex, fatty marrow); returns (fluid, T1).

    With ``oedema_side`` that head's upper half is oedematous (bright fluid-sensitive, dark T1).
    """
    nz = grid.GetSize()[2]
    block = Block(0, nz, 0, grid.GetSize()[1], 0, grid.GetSize()[0])
    x, y, z = block_coordinates(grid, block)
    body = (x / 170.0) ** 2 + (y / 110.0) ** 2 <= 1.0
    deep = (x / 150.0) ** 2 + (y / 90.0) ** 2 <= 1.0
    t1 = np.where(body, 750.0, 0.0) * np.where(deep, 0.38, 1.0)  # fat 750, muscle 285
    fluid = np.where(body, 25.0, 0.0) + np.where(deep, 165.0, 0.0)  # fat 25, muscle 190
    for sign, side in ((-1.0, "right"), (1.0, "left")):
        d = np.sqrt((x - sign * HEAD_X) ** 2 + y**2 + z**2)
        cortex = (d <= HEAD_R) & (d > HEAD_R - 1.5)
        marrow = d <= HEAD_R - 1.5
        t1 = np.where(cortex, 5.0, np.where(marrow, 640.0, t1))
        fluid = np.where(cortex, 2.0, np.where(marrow, 35.0, fluid))
        if side == oedema_side:
            lesion = marrow & (z > 0)
            t1 = np.where(lesion, 400.0, t1)
            fluid = np.where(lesion, 330.0, fluid)
    rng = np.random.default_rng(7)
    out = []
    for arr in (fluid, t1):
        noisy = np.abs(arr + rng.normal(0.0, 6.0, arr.shape)).astype(np.float32)
        img = sitk.GetImageFromArray(noisy)
        img.CopyInformation(grid)
        out.append(img)
    return out[0], out[1]


def test_block_coordinates_match_simpleitk() -> None:
    grid = _grid((7, 5, 4), (0.8, 0.9, 4.4), CORONAL_FEET_FIRST, centre=(3.0, -2.0, 10.0))
    x, y, z = block_coordinates(grid, Block(1, 3, 2, 4, 3, 6))
    for k, j, i in ((0, 0, 0), (1, 1, 2), (1, 0, 1)):
        expect = grid.TransformIndexToPhysicalPoint((3 + i, 2 + j, 1 + k))
        assert (x[k, j, i], y[k, j, i], z[k, j, i]) == pytest.approx(expect, abs=1e-3)


def test_resample_keeps_a_marker_at_its_patient_position() -> None:
    rot = np.asarray(sitk.VersorTransform((0.0, 0.0, 1.0), np.radians(15.0)).GetMatrix()).reshape(3, 3)
    oblique = tuple(float(v) for v in (rot @ np.asarray(CORONAL).reshape(3, 3)).ravel())
    moving = _grid((60, 60, 20), (2.0, 2.0, 5.0), oblique)
    point = (21.0, -10.0, 14.0)
    x, y, z = block_coordinates(moving, Block(0, 20, 0, 60, 0, 60))
    marker = ((x - point[0]) ** 2 + (y - point[1]) ** 2 + (z - point[2]) ** 2 <= 36.0).astype(np.float32)
    img = sitk.GetImageFromArray(marker)
    img.CopyInformation(moving)
    target = axis_aligned_grid(moving, 1.5)
    arr = to_array(resample_onto(img, target))
    centroid = np.array(np.nonzero(arr > 0.5)).mean(axis=1)[::-1]  # (x, y, z) index
    found = target.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in centroid))
    assert found == pytest.approx(point, abs=1.5)


def test_clean_mask_drops_specks_and_fills_small_holes() -> None:
    mask = np.zeros((10, 40, 40), dtype=bool)
    mask[2:8, 5:20, 5:20] = True
    mask[5, 10, 10] = False  # a one-voxel hole
    mask[5, 30, 30] = True  # a speck
    out = clean_mask(mask, np.ones_like(mask), voxel_mm3=1.0, params=PARAMS)
    assert out[5, 10, 10] and not out[5, 30, 30]
    assert out.sum() == 6 * 15 * 15


def test_t1_confirmation_keeps_dark_components_only() -> None:
    mask = np.zeros((4, 20, 20), dtype=bool)
    mask[:, 2:8, 2:8] = True
    mask[:, 12:18, 12:18] = True
    t1 = np.full(mask.shape, 640.0, dtype=np.float32)
    t1[:, 2:8, 2:8] = 380.0  # oedema: dark on T1; the other component stays fatty (failed fat suppression)
    out = confirm_by_t1(mask, t1, 640.0, PARAMS)
    assert out[:, 2:8, 2:8].all() and not out[:, 12:18, 12:18].any()


def test_lesion_boundary_is_half_way_to_the_peak() -> None:
    fluid = np.array([30.0, 300.0, 320.0, 330.0, 340.0], dtype=np.float32)
    cand = np.array([False, True, True, True, True])
    level = lesion_boundary(fluid, cand, RobustStats(30.0, 25.0, 35.0, None, 100).median, PARAMS)
    peak = float(np.percentile(fluid[cand], PARAMS.peak_percentile))
    assert level == pytest.approx(30.0 + 0.5 * (peak - 30.0))


@pytest.mark.parametrize("direction", [CORONAL, CORONAL_FEET_FIRST], ids=["head_first", "feet_first"])
def test_heads_found_and_sided_from_patient_coordinates(direction: tuple[float, ...]) -> None:
    grid = _grid((180, 120, 40), (2.0, 2.0, 2.0), direction)
    fluid, t1 = _hips(grid, None)
    work_grid = axis_aligned_grid(grid, PARAMS.working_spacing_mm)
    t1w, fw = to_array(resample_onto(t1, work_grid)), to_array(resample_onto(fluid, work_grid))
    loc = locate_femurs(WorkingImages(grid=work_grid, t1=t1w, fluid=fw, body=body_mask(t1w)), PARAMS)
    right, left = loc.femurs["right"], loc.femurs["left"]
    assert right is not None and left is not None, loc.reasons
    assert right.centre[0] == pytest.approx(-HEAD_X, abs=2.5)
    assert left.centre[0] == pytest.approx(HEAD_X, abs=2.5)
    assert abs(right.radius_mm - HEAD_R) <= 2.5 and abs(left.radius_mm - HEAD_R) <= 2.5


@pytest.mark.parametrize("direction", [CORONAL, CORONAL_FEET_FIRST], ids=["head_first", "feet_first"])
def test_oedema_lands_on_the_lesion_side(direction: tuple[float, ...]) -> None:
    grid = _grid((180, 120, 40), (2.0, 2.0, 2.0), direction)
    fluid, t1 = _hips(grid, "left")
    timer = StageTimer()
    result = analyze_images(fluid, t1, PARAMS, timer=timer)
    left, right = result.sides["left"], result.sides["right"]
    assert left.present is True and right.present is False
    assert left.oedema_volume_ml is not None and left.oedema_volume_ml > 10.0
    assert right.oedema_volume_ml is not None and right.oedema_volume_ml < 1.0
    mask = sitk.GetArrayFromImage(result.maps.oedema)
    zz, yy, xx = np.nonzero(mask == 2)
    xs = [result.maps.oedema.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))[0]
          for i, j, k in zip(xx[::50], yy[::50], zz[::50], strict=True)]
    assert min(xs) > 40.0  # every left-labelled voxel is on the patient's left (+x)
    assert set(timer.timings) >= {"prepare", "anatomy", "score", "measure"}
