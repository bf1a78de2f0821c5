# mypy: disallow-untyped-calls=False
"""Pure analysis functions on tiny synthetic volumes built here (no DICOM, no phantom)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from workers.analysis.analyze import StageTimer, analyze_images, slice_sampling
from workers.analysis.anatomy import (
    SHADED_RATIO,
    FemurGeometry,
    WorkingImages,
    body_mask,
    lateral_shading,
    locate_femurs,
)
from workers.analysis.marrow import segment_marrow
from workers.analysis.measure import effusion
from workers.analysis.oedema import drop_small, fill_small_holes, oedema_mask
from workers.analysis.params import AnalysisParameters
from workers.analysis.preparation import (
    Block,
    axis_aligned_grid,
    block_coordinates,
    resample_onto,
    to_array,
)
from workers.analysis.regions import femur_frame
from workers.analysis.tissues import TissueLevels, tissue_levels

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


def test_small_components_dropped_and_small_holes_filled() -> None:
    mask = np.zeros((10, 40, 40), dtype=bool)
    mask[2:8, 5:20, 5:20] = True
    mask[5, 10, 10] = False  # a one-voxel hole
    mask[5, 30, 30] = True  # a speck
    out = drop_small(fill_small_holes(mask, 10), 10)
    assert out[5, 10, 10] and not out[5, 30, 30]
    assert out.sum() == 6 * 15 * 15


def _tissue_block(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fluid, t1, sample): muscle everywhere, a fat layer, a little fluid, arbitrary vendor scaling."""
    shape = (6, 60, 60)
    t1 = np.full(shape, 900.0)
    fluid = np.full(shape, 410.0)
    t1[:, :, :15] = 2300.0  # fat
    fluid[:, :, :15] = 130.0
    t1[:, 50:, 50:] = 300.0  # fluid: dark on T1, bright on STIR
    fluid[:, 50:, 50:] = 1900.0
    noisy = [(a + rng.normal(0.0, 0.03 * float(a.mean()), shape)).astype(np.float32) for a in (fluid, t1)]
    return noisy[0], noisy[1], np.ones(shape, dtype=bool)


def test_tissue_levels_from_the_study_itself_whatever_the_scaling() -> None:
    rng = np.random.default_rng(3)
    fluid, t1, sample = _tissue_block(rng)
    for scale in (1.0, 7.5):
        levels = tissue_levels(fluid * scale, t1 * scale, sample, free_fluid=1900.0 * scale)
        assert levels.t1_muscle == pytest.approx(900.0 * scale, rel=0.05)
        assert levels.t1_fat == pytest.approx(2300.0 * scale, rel=0.05)
        assert levels.fluid_muscle == pytest.approx(410.0 * scale, rel=0.05)
        assert levels.fluid_fat == pytest.approx(130.0 * scale, rel=0.08)
        assert levels.fat_suppression_ratio < 0.5
        u = levels.u(np.array([130.0, 410.0, 690.0], dtype=np.float32) * scale)
        assert u == pytest.approx([0.0, 1.0, 2.0], abs=0.1)
    no_t1 = tissue_levels(fluid, None, sample, free_fluid=1900.0)
    assert no_t1.fluid_muscle == pytest.approx(410.0, rel=0.05) and no_t1.t1_muscle is None


def test_marrow_stops_at_the_cortex_when_muscle_is_as_bright() -> None:
    """A head and neck (fatty on T1) inside a dark cortex, in muscle whose fluid-sensitive signal is as
    high as the marrow's brightness on T1: the marrow never crosses the cortex."""
    grid = _grid((80, 80, 12), (1.0, 1.0, 4.0), CORONAL)
    block = Block(0, 12, 0, 80, 0, 80)
    x, y, z = block_coordinates(grid, block)
    femur = FemurGeometry(side="left", centre=(0.0, 0.0, 0.0), radius_mm=20.0, neck_axis=(0.7071, 0.0, -0.7071),
                          neck_radius_mm=12.0, neck_length_mm=45.0, edge_coherence=1.0, shaft_found=False)
    frame = femur_frame(femur, (x, y, z))
    neck = (frame.along >= 0) & (frame.along <= 45.0) & (frame.radial <= 12.0)
    bone = (frame.dist_centre <= 20.0) | neck
    inner = (frame.dist_centre <= 18.0) | (neck & (frame.radial <= 10.0))
    t1 = np.where(bone, 80.0, 900.0)  # cortex dark, muscle
    t1 = np.where(inner, 2200.0, t1)  # fatty marrow
    fluid = np.where(bone, 20.0, 410.0)
    fluid = np.where(inner, 150.0, fluid)
    rng = np.random.default_rng(5)
    t1 = (t1 + rng.normal(0, 30.0, t1.shape)).astype(np.float32)
    fluid = (fluid + rng.normal(0, 12.0, fluid.shape)).astype(np.float32)
    levels = TissueLevels(fluid_fat=130.0, fluid_muscle=410.0, fluid_free=None, t1_fat=2300.0, t1_muscle=900.0,
                          fat_voxels=1000, muscle_voxels=1000)
    marrow = segment_marrow(fluid, t1, levels, femur, frame, np.ones(t1.shape, dtype=bool), PARAMS)
    assert not (marrow & ~bone).any()  # never outside the cortex
    assert (marrow & inner).sum() >= 0.9 * inner.sum()


def test_oedema_outline_is_the_half_maximum_whatever_the_intensity() -> None:
    """A lesion with a 4 mm ramp inside marrow: the outline sits at the ramp's middle, for a faint and
    for an intense lesion alike (so noise or intensity do not change the volume)."""
    levels = TissueLevels(fluid_fat=100.0, fluid_muscle=400.0, fluid_free=None, t1_fat=None, t1_muscle=None,
                          fat_voxels=1000, muscle_voxels=1000, fluid_smoothing_px=0.5)
    shape = (8, 40, 80)
    xs = np.arange(shape[2], dtype=np.float32)[None, None, :]
    ramp = np.clip((xs - 38.0) / 4.0, 0.0, 1.0)  # 0 at x<=38, 1 at x>=42: middle at x=40
    marrow = np.ones(shape, dtype=bool)
    for plateau_u in (2.0, 5.0):
        plateau = levels.u_level(plateau_u)
        fluid = np.broadcast_to(100.0 + ramp * (plateau - 100.0), shape).astype(np.float32)
        mask, score = oedema_mask(fluid, None, marrow, levels, (4.0, 1.0, 1.0), PARAMS)
        columns = np.nonzero(mask[4, 20])[0]
        assert columns.min() == pytest.approx(40, abs=1)
        assert score[mask].min() > 0


def test_thin_joint_fluid_is_not_an_effusion_but_a_distended_capsule_is() -> None:
    grid = _grid((80, 80, 12), (1.0, 1.0, 4.0), CORONAL)
    x, y, z = block_coordinates(grid, Block(0, 12, 0, 80, 0, 80))
    femur = FemurGeometry(side="right", centre=(0.0, 0.0, 0.0), radius_mm=20.0, neck_axis=(-0.7071, 0.0, -0.7071),
                          neck_radius_mm=12.0, neck_length_mm=45.0, edge_coherence=1.0, shaft_found=False)
    frame = femur_frame(femur, (x, y, z))
    levels = TissueLevels(fluid_fat=100.0, fluid_muscle=400.0, fluid_free=2000.0, t1_fat=2000.0, t1_muscle=900.0,
                          fat_voxels=1000, muscle_voxels=1000)
    marrow = frame.dist_centre <= 18.0
    for thickness, expected in ((1.5, False), (5.0, True)):
        shell = (frame.dist_centre > 20.5) & (frame.dist_centre <= 20.5 + thickness) & (z > 0)
        fluid = np.where(shell, 2000.0, 400.0).astype(np.float32)
        t1 = np.where(shell, 300.0, 900.0).astype(np.float32)
        eff = effusion(fluid, t1, levels, femur, frame, marrow, (4.0, 1.0, 1.0), PARAMS)
        assert eff.present is expected, (thickness, eff)


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


@pytest.mark.parametrize(("spacing", "slices"), [(12.0, 11), (4.0, 31)], ids=["gapped_12mm", "contiguous_4mm"])
def test_head_outline_across_thick_slices_is_judged_within_half_a_spacing(spacing: float, slices: int) -> None:
    """Across slices 12 mm apart an edge along the slice normal is placed only to within half a
    spacing: the head's sphericity allows that there (more coherent), and changes nothing at 4 mm."""
    grid = _grid((180, 120, slices), (2.0, 2.0, spacing), CORONAL)
    fluid, t1 = _hips(grid, None)
    work_grid = axis_aligned_grid(grid, PARAMS.working_spacing_mm)
    t1w, fw = to_array(resample_onto(t1, work_grid)), to_array(resample_onto(fluid, work_grid))
    plain = WorkingImages(grid=work_grid, t1=t1w, fluid=fw, body=body_mask(t1w))
    sampled = replace(plain, slice_sampling=(slice_sampling(grid),))
    before, after = locate_femurs(plain, PARAMS).femurs, locate_femurs(sampled, PARAMS).femurs
    for side in ("right", "left"):
        a, b = before[side], after[side]  # type: ignore[index]
        assert a is not None and b is not None
        if spacing > 2 * 3.0:
            assert b.edge_coherence >= a.edge_coherence + 0.03, (side, a.edge_coherence, b.edge_coherence)
        else:
            assert b.edge_coherence == a.edge_coherence


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


def test_body_keeps_its_dark_side_under_strong_coil_shading() -> None:
    """A fivefold left-right coil gradient: measured as shading, and the dark side stays in the body;
    a flat body measures ~1 and keeps the plain mask."""
    z, y, x = np.mgrid[0:12, 0:64, 0:96]
    body = ((y - 32) / 26.0) ** 2 + ((x - 48) / 40.0) ** 2 < 1.0
    rng = np.random.default_rng(3)
    flat = np.where(body, 400.0, 5.0) + rng.normal(0, 4, body.shape)
    shaded = flat * np.linspace(0.3, 1.5, 96)[None, None, :]
    assert lateral_shading(flat.astype(np.float32), body) < 1.1
    assert lateral_shading(shaded.astype(np.float32), body) > SHADED_RATIO
    for image in (flat, shaded):
        found = body_mask(image.astype(np.float32))
        assert (found & body).sum() / body.sum() > 0.97
        assert not (found & ~ndimage.binary_dilation(body, iterations=2)).any()  # the smoothing's rim at most
