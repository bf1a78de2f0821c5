# mypy: disallow-untyped-calls=False
"""The oedema analysis of one study: fluid-sensitive series (+ optional T1) -> sides, quality, maps.

Pure numpy/SimpleITK/scipy. Stages (timed): prepare, anatomy, quality, score, measure.
Per hip: the study's own tissue levels around it (``tissues``), its marrow segmented from the
images (``marrow``), the head/neck/intertrochanteric parts of that marrow (``regions``), the
oedema inside it (``oedema``), then measurements, effusion and pattern (``measure``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage
from skimage.filters import threshold_otsu

from workers.analysis.anatomy import (
    SIDES,
    FemurGeometry,
    Localization,
    WorkingImages,
    body_mask,
    locate_femurs,
    midline,
)
from workers.analysis.coverage import Coverage, coverage_note, hip_coverage
from workers.analysis.maps import AnalysisMaps
from workers.analysis.marrow import femur_envelope, segment_marrow
from workers.analysis.measure import (
    MarrowReference,
    classify_pattern,
    effusion,
    measure_regions,
)
from workers.analysis.oedema import oedema_mask
from workers.analysis.params import AnalysisParameters
from workers.analysis.preparation import (
    BiasCorrected,
    Block,
    axis_aligned_grid,
    block_around,
    block_coordinates,
    fit_bias,
    like,
    register_rigid,
    resample_onto,
    sub_image,
    voxel_volume_ml,
)
from workers.analysis.quality import PhaseEncodeCheck, check_phase_encode_artefacts, metal_implants
from workers.analysis.regions import (
    REGION_NAMES,
    FemurFrame,
    femur_frame,
    femur_regions,
    shaft_marrow,
)
from workers.analysis.result import REGION_LABELS, Quality, RegionName, Side, SideResult
from workers.analysis.tissues import TissueError, TissueLevels, free_fluid_level, tissue_levels

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]
Progress = Callable[[str], None]

SIDE_LABEL: dict[Side, int] = {"right": 1, "left": 2}
MIN_T1_COVERAGE = 0.5
TISSUE_RADIUS_MM = 80.0  # tissue levels are sampled this close to the head centre
SHAFT_DEPTH_MM = 110.0  # the hip's block reaches this far below the head centre
MIN_REFERENCE_VOXELS = 30
SHADING_RATIO_MAX = 1.5  # muscle signal of one hip / the other's beyond this: coil shading left in


@dataclass
class StageTimer:
    """Wall-clock seconds per named stage."""

    timings: dict[str, float] = field(default_factory=dict)
    progress: Progress | None = None

    @contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        if self.progress is not None:
            self.progress(message)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)


@dataclass(frozen=True)
class SeriesAnalysis:
    """What the analysis of one fluid-sensitive (+T1) pair produced."""

    sides: dict[Side, SideResult]
    quality: Quality
    maps: AnalysisMaps
    localization: Localization
    t1_used: bool


@dataclass
class _Hip:
    """One localised hip on its block of the fluid-sensitive grid."""

    femur: FemurGeometry
    block: Block
    fluid: FloatArray
    t1: FloatArray | None
    frame: FemurFrame
    spacing: tuple[float, float, float]  # (z, y, x) mm
    levels: TissueLevels | None = None
    marrow: BoolArray | None = None
    regions: dict[RegionName, BoolArray] = field(default_factory=dict)
    problem: str = ""


def _prepare(fluid_image: sitk.Image, t1_image: sitk.Image | None, params: AnalysisParameters,
             warnings: list[str]) -> tuple[BiasCorrected, BiasCorrected | None, WorkingImages]:
    fluid = fit_bias(fluid_image, shrink_mm=params.n4_shrink_mm, iterations=params.n4_iterations)
    t1: BiasCorrected | None = None
    if t1_image is not None:
        coverage = _coverage(t1_image, fluid_image)
        if coverage < MIN_T1_COVERAGE:
            warnings.append(f"T1 covers only {100 * coverage:.0f}% of the body in the fluid-sensitive series; T1 not used")
        else:
            t1 = fit_bias(t1_image, shrink_mm=params.n4_shrink_mm, iterations=params.n4_iterations)
    grid = axis_aligned_grid(fluid_image, params.working_spacing_mm)
    fluid_work = fluid.on(grid)
    t1_work = t1.on(grid) if t1 is not None else None
    if t1 is not None and t1_work is not None:
        t1 = _aligned_t1(t1, t1_work, fluid_work, grid, params, warnings)
        t1_work = t1.on(grid) if t1 is not None else None
    body = body_mask(t1_work if t1_work is not None else fluid_work)
    sources = [fluid_image] + ([t1_image] if t1 is not None and t1_image is not None else [])
    work = WorkingImages(grid=grid, t1=t1_work, fluid=fluid_work, body=body,
                         slice_sampling=tuple(slice_sampling(image) for image in sources))
    return fluid, t1, work


def slice_sampling(image: sitk.Image) -> tuple[tuple[float, float, float], float]:
    """(unit slice normal in LPS, spacing between slice centres in mm) of a series' image."""
    d = image.GetDirection()
    normal = (float(d[2]), float(d[5]), float(d[8]))
    return normal, float(image.GetSpacing()[2])


def _aligned_t1(t1: BiasCorrected, t1_work: FloatArray, fluid_work: FloatArray, grid: sitk.Image,
                params: AnalysisParameters, warnings: list[str]) -> BiasCorrected | None:
    """The T1 as it lies on the fluid-sensitive series: unchanged when the two agree, rigidly
    registered when the patient moved between them, None (not used) when they cannot be matched."""
    fixed = like(fluid_work, grid)
    mask = like(body_mask(fluid_work).astype(np.uint8), grid)
    try:
        reg = register_rigid(fixed, like(t1_work, grid), mask)
    except RuntimeError as exc:  # SimpleITK's registration failure
        warnings.append(f"T1 and the fluid-sensitive series could not be compared ({exc}); T1 not used")
        return None
    if reg.shift_mm <= params.registration_still_mm and reg.rotation_deg <= params.registration_still_deg:
        return t1
    improved = reg.metric_after < reg.metric_before - params.registration_min_gain * abs(reg.metric_before)
    if not improved:
        # the optimiser drifted without finding a better match than the recorded geometry (a
        # moved T1 improves the mutual information by a third or more): the T1 lies as recorded
        return t1
    plausible = reg.shift_mm <= params.registration_max_mm and reg.rotation_deg <= params.registration_max_deg
    moved = f"{reg.shift_mm:.1f} mm, {reg.rotation_deg:.1f} degrees"
    if plausible:
        warnings.append(f"the patient moved between the T1 and the fluid-sensitive series: the T1 was registered "
                        f"to it ({moved})")
        return t1.registered(reg.transform)
    warnings.append(f"the T1 does not match the fluid-sensitive series and registration is not trustworthy "
                    f"({moved}); T1 not used")
    return None


def _coverage(moving: sitk.Image, reference: sitk.Image) -> float:
    """Fraction of the body in ``reference`` (its voxels above half the Otsu level, sampled on a
    coarse lattice) that lies inside ``moving``: air around the patient, e.g. the wide
    anterior-posterior field of an axial series, does not count."""
    nx, ny, nz = reference.GetSize()
    lattice = [(i, j, k) for k in range(0, nz, max(1, nz // 8)) for j in range(0, ny, max(1, ny // 16))
               for i in range(0, nx, max(1, nx // 16))]
    values = np.array([reference.GetPixel(*ijk) for ijk in lattice], dtype=np.float64)
    if values.ndim > 1:  # a vector image: its magnitude
        values = np.linalg.norm(values, axis=1)
    positive = values[values > 0]
    level = 0.5 * float(threshold_otsu(positive)) if positive.size > 1 and np.ptp(positive) > 0 else 0.0
    size = np.asarray(moving.GetSize(), dtype=np.float64)
    inside = total = 0
    for ijk, value in zip(lattice, values, strict=True):
        if value <= level:
            continue
        idx = np.asarray(moving.TransformPhysicalPointToContinuousIndex(reference.TransformIndexToPhysicalPoint(ijk)))
        inside += int(bool(np.all(idx >= -0.5) and np.all(idx <= size - 0.5)))
        total += 1
    return inside / max(total, 1)


def side_block(image: sitk.Image, femur: FemurGeometry, params: AnalysisParameters) -> Block:
    """The voxels of ``image`` that can hold this femur's marrow, its tissue sample and effusion shell."""
    c = np.asarray(femur.centre)
    base = c + femur.neck_length_mm * np.asarray(femur.neck_axis)
    low = base - np.array([0.0, 0.0, SHAFT_DEPTH_MM - (c[2] - base[2])])
    margin = max(femur.radius_mm + params.effusion_shell_mm, params.intertrochanteric_radius_mm) + 15.0
    pts = [(float(p[0]), float(p[1]), float(p[2])) for p in (c, base, low)]
    return block_around(image, pts, margin)


def _hip(femur: FemurGeometry, fluid_bias: BiasCorrected, t1_bias: BiasCorrected | None,
         fluid_image: sitk.Image, params: AnalysisParameters) -> _Hip:
    block = side_block(fluid_image, femur, params)
    grid = sub_image(fluid_image, block)
    sx, sy, sz = fluid_image.GetSpacing()
    return _Hip(femur=femur, block=block, fluid=fluid_bias.on(grid),
                t1=t1_bias.on(grid) if t1_bias is not None else None,
                frame=femur_frame(femur, block_coordinates(fluid_image, block)), spacing=(sz, sy, sx))


def _tissue_sample(hip: _Hip, body: BoolArray, params: AnalysisParameters) -> BoolArray:
    """Body voxels near the hip and outside its femur envelope (muscle, fat, vessels, fluid)."""
    envelope = femur_envelope(hip.femur, hip.frame, params, params.envelope_margin_mm)
    near = hip.frame.dist_centre <= np.float32(TISSUE_RADIUS_MM)
    out: BoolArray = body & near & ~envelope & (hip.fluid > 0)
    return out


def _body(hip: _Hip, work: WorkingImages, fluid_image: sitk.Image) -> BoolArray:
    """The patient's body on the hip's block."""
    body_img = like(work.body.astype(np.uint8), work.grid)
    out: BoolArray = sitk.GetArrayFromImage(resample_onto(body_img, sub_image(fluid_image, hip.block),
                                                          nearest=True)) > 0
    return out


def _reference(hip: _Hip, mask: BoolArray) -> MarrowReference:
    """Normal marrow of this femur (its marrow away from the oedema); fat when there is too little."""
    assert hip.marrow is not None and hip.levels is not None
    normal = hip.marrow & ~ndimage.binary_dilation(mask, iterations=2)
    if int(normal.sum()) >= MIN_REFERENCE_VOXELS:
        t1 = float(np.median(hip.t1[normal])) if hip.t1 is not None else None
        return MarrowReference(fluid=float(np.median(hip.fluid[normal])), t1=t1,
                               description=f"normal marrow of the same femur ({hip.femur.side})")
    return MarrowReference(fluid=hip.levels.fluid_fat, t1=hip.levels.t1_fat,
                           description=f"fat around the {hip.femur.side} hip (no normal marrow left)")


def _withheld(femur: FemurGeometry, reason: str) -> SideResult:
    return SideResult(side=femur.side, localized=True, reason=reason, head_centre_lps_mm=femur.centre,
                      head_radius_mm=round(femur.radius_mm, 1))


@dataclass
class _Maps:
    score: FloatArray
    oedema: npt.NDArray[np.uint8]
    regions: npt.NDArray[np.uint8]
    effusion: npt.NDArray[np.uint8]
    marrow: npt.NDArray[np.uint8]

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> _Maps:
        return cls(score=np.zeros(shape, np.float32), oedema=np.zeros(shape, np.uint8),
                   regions=np.zeros(shape, np.uint8), effusion=np.zeros(shape, np.uint8),
                   marrow=np.zeros(shape, np.uint8))

    def images(self, reference: sitk.Image) -> AnalysisMaps:
        return AnalysisMaps(score=like(self.score, reference), oedema=like(self.oedema, reference),
                            regions=like(self.regions, reference), effusion=like(self.effusion, reference),
                            marrow=like(self.marrow, reference))


def analyze_images(
    fluid_image: sitk.Image,
    t1_image: sitk.Image | None,
    params: AnalysisParameters | None = None,
    *,
    timer: StageTimer | None = None,
    fluid_label: str = "fluid-sensitive series",
    t1_label: str = "T1",
    slice_thickness_mm: float | None = None,
) -> SeriesAnalysis:
    """Map oedema in both hips. Geometry in LPS; the maps are on ``fluid_image``'s grid.

    ``slice_thickness_mm``: the fluid-sensitive series' SliceThickness (gaps between slices give
    volume ranges); None = contiguous slices."""
    params = params or AnalysisParameters()
    timer = timer or StageTimer()
    warnings: list[str] = []
    with timer.stage("prepare", "preparing images (bias correction, T1 onto the fluid-sensitive grid)"):
        fluid_bias, t1_bias, work = _prepare(fluid_image, t1_image, params, warnings)
    with timer.stage("anatomy", "locating femoral heads and necks"):
        metal = metal_implants(work, midline(work)[0])
        loc = locate_femurs(work, params, skip=metal)
    with timer.stage("quality", "checking for motion ghosts and wrap-around"):
        phase = check_phase_encode_artefacts(fluid_image, t1_image if t1_bias is not None else None, loc, params)

    maps = _Maps.empty(tuple(reversed(fluid_image.GetSize())))
    sides: dict[Side, SideResult] = {}
    for side, _ in SIDES:
        if loc.femurs[side] is None:
            sides[side] = SideResult(side=side, localized=False, imaged=loc.imaged[side],
                                     reason=loc.reasons.get(side, "not localised"))
    found = {s: f for s, f in loc.femurs.items() if f is not None}
    with timer.stage("score", "segmenting marrow and scoring its signal against the study's tissues"):
        free = free_fluid_level(work.fluid, work.body, work.t1)
        hips = {s: _hip(f, fluid_bias, t1_bias, fluid_image, params) for s, f in found.items()}
        for hip in hips.values():
            _segment(hip, work, fluid_image, free, params, maps)
    with timer.stage("measure", "measuring oedema, effusion and pattern"):
        for side, hip in hips.items():
            cov = hip_coverage(fluid_image, hip.femur, slice_thickness_mm, params)
            note = coverage_note(side, cov)
            if note:
                warnings.append(note)
            result = _measure(side, hip, phase, params, warnings, maps, voxel_volume_ml(fluid_image))
            sides[side] = result.model_copy(update={
                "coverage_pct": cov.covered_pct,
                "oedema_volume_range_ml": _volume_range(maps.oedema, SIDE_LABEL[side], cov, fluid_image)
                if result.oedema_volume_ml else None})
    t1_used = t1_bias is not None
    quality = _quality(sides, hips, loc, warnings, fluid_label, t1_label, t1_used, params.fat_sat_ratio_max)
    return SeriesAnalysis(sides=sides, quality=quality, maps=maps.images(fluid_image), localization=loc,
                          t1_used=t1_used)


def _segment(hip: _Hip, work: WorkingImages, fluid_image: sitk.Image, free: float | None,
             params: AnalysisParameters, maps: _Maps) -> None:
    """Tissue levels, marrow and regions of one hip (drawn into ``maps`` even where numbers are withheld)."""
    body = _body(hip, work, fluid_image)
    try:
        hip.levels = tissue_levels(hip.fluid, hip.t1, _tissue_sample(hip, body, params), free)
    except TissueError as exc:
        hip.problem = f"tissue reference not found around the {hip.femur.side} hip: {exc}"
        return
    hip.marrow = segment_marrow(hip.fluid, hip.t1, hip.levels, hip.femur, hip.frame, body, params)
    hip.regions = femur_regions(hip.femur, hip.frame, hip.marrow, params)
    label = SIDE_LABEL[hip.femur.side]
    maps.marrow[hip.block.slices][hip.marrow] = label
    sub = maps.regions[hip.block.slices]
    for name in REGION_NAMES:
        sub[hip.regions[name] & (sub == 0)] = REGION_LABELS[(hip.femur.side, name)]


def _measure(side: Side, hip: _Hip, phase: PhaseEncodeCheck, params: AnalysisParameters, warnings: list[str],
             maps: _Maps, voxel_ml: float) -> SideResult:
    femur = hip.femur
    if hip.problem or hip.levels is None or hip.marrow is None:
        warnings.append(hip.problem)
        return _withheld(femur, hip.problem)
    if side in phase.corrupted:
        msg = f"{phase.corrupted[side]}; {side} result withheld (no oedema can be measured through it)"
        warnings.append(msg)
        return _withheld(femur, msg)
    levels = hip.levels
    ratio = levels.fat_suppression_ratio
    if ratio >= params.fat_sat_ratio_max:
        msg = (f"fat suppression failed around the {side} hip (fat {ratio:.2f} x muscle on the fluid-sensitive "
               "series): bright marrow there may be fat, not water; result withheld")
        warnings.append(msg)
        return _withheld(femur, msg)
    shaft = shaft_marrow(hip.frame, hip.marrow, params.shaft_check_below_mm)
    if float(shaft.sum()) * voxel_ml >= params.shaft_check_min_ml:
        shaft_u = float(np.median(levels.u(hip.fluid[shaft])))
        if shaft_u >= params.shaft_u_max:
            msg = (f"the {side} femoral shaft marrow is as bright as muscle on the fluid-sensitive series "
                   f"({shaft_u:.1f} on the fat-muscle scale; fatty marrow is near 0): fat suppression has failed "
                   "over this hip, or its marrow is replaced; result withheld")
            warnings.append(msg)
            return _withheld(femur, msg)
    roi = hip.regions["head"] | hip.regions["neck"] | hip.regions["intertrochanteric"]
    mask, score = oedema_mask(hip.fluid, hip.t1, hip.marrow, levels, hip.spacing, params)
    mask &= roi
    ref = _reference(hip, mask)
    measures = measure_regions(hip.regions, mask, hip.fluid, hip.t1, ref, voxel_ml)
    volume = float(mask.sum()) * voxel_ml
    present = volume >= params.present_min_ml
    pattern = classify_pattern(mask, hip.regions, measures, hip.frame, femur, present, hip.fluid, hip.t1, ref, params)
    eff = effusion(hip.fluid, hip.t1, levels, femur, hip.frame, hip.marrow, hip.spacing, params)
    maps.score[hip.block.slices][mask] = score[mask]
    maps.oedema[hip.block.slices][mask] = SIDE_LABEL[side]
    maps.effusion[hip.block.slices][eff.mask] = SIDE_LABEL[side]
    per_slice = mask.sum(axis=(1, 2))
    largest = int(hip.block.z0 + int(np.argmax(per_slice))) if mask.any() else None
    n = int(mask.sum())
    sir = hip.fluid[mask] / ref.fluid
    t1r = hip.t1[mask] / ref.t1 if (hip.t1 is not None and ref.t1) else None
    return SideResult(
        side=side,
        localized=True,
        head_centre_lps_mm=(round(femur.centre[0], 1), round(femur.centre[1], 1), round(femur.centre[2], 1)),
        head_radius_mm=round(femur.radius_mm, 1),
        present=present,
        oedema_volume_ml=round(volume, 2),
        head_involvement_pct=measures["head"].involvement_pct,
        neck_involvement_pct=measures["neck"].involvement_pct,
        intertrochanteric_involvement_pct=measures["intertrochanteric"].involvement_pct,
        regions=measures,
        mean_signal_ratio=round(float(sir.mean()), 2) if n else None,
        p95_signal_ratio=round(float(np.percentile(sir, 95)), 2) if n else None,
        mean_t1_ratio=round(float(t1r.mean()), 2) if (t1r is not None and n) else None,
        pattern=pattern.pattern,
        subchondral_low_signal_band=pattern.band,
        medial_head_sparing=pattern.medial_sparing,
        effusion=eff.present,
        effusion_volume_ml=eff.volume_ml,
        effusion_thickness_mm=eff.thickness_mm,
        fat_suppression_ratio=round(ratio, 2),
        reference=ref.description,
        largest_slice_index=largest,
    )


def _volume_range(oedema: npt.NDArray[np.uint8], label: int, cov: Coverage,
                  image: sitk.Image) -> tuple[float, float] | None:
    """Across gaps between slices the volume is interpolated: it lies within half a slice spacing of
    the lesion's first and last cross-sections either way. None without gaps."""
    if cov.gap_mm <= 0:
        return None
    per_slice = (oedema == label).sum(axis=(1, 2)).astype(np.float64)
    filled = np.nonzero(per_slice)[0]
    if filled.size == 0:
        return None
    sx, sy, sz = image.GetSpacing()
    area_ml = float(per_slice[filled[0]] + per_slice[filled[-1]]) * sx * sy / 1000.0
    volume = float(per_slice.sum()) * sx * sy * sz / 1000.0
    half = 0.5 * area_ml * sz
    return (round(float(max(volume - half, 0.0)), 1), round(float(volume + half), 1))


def _quality(sides: dict[Side, SideResult], hips: dict[Side, _Hip], loc: Localization, warnings: list[str],
             fluid_label: str, t1_label: str, t1_used: bool, fat_sat_ratio_max: float) -> Quality:
    all_warnings = list(dict.fromkeys(warnings)) + list(loc.notes)
    for side, _ in SIDES:
        femur = loc.femurs[side]
        if femur is not None:
            all_warnings.extend(f"{side}: {n}" for n in femur.notes)
        elif sides[side].reason:
            all_warnings.append(f"{side}: {sides[side].reason}")
    if not t1_used:
        all_warnings.append("no T1 used: oedema not confirmed by low T1 signal")
    withheld = [s for s, r in sides.items() if r.localized and r.present is None]
    missing = [s for s, r in sides.items() if not r.localized]
    fat_ok = [h.levels.fat_suppression_ratio < fat_sat_ratio_max for h in hips.values() if h.levels is not None]
    fat_sat_ok = all(fat_ok) if fat_ok else None
    confidence: Literal["normal", "reduced", "withheld"] = "normal"
    if withheld or missing or fat_sat_ok is False or not t1_used:
        confidence = "reduced"
    if len(withheld) + len(missing) == 2:
        confidence = "withheld"
    levels = [h.levels for h in hips.values() if h.levels is not None]
    if len(levels) == 2:
        shading = levels[0].fluid_muscle / levels[1].fluid_muscle
        if not 1 / SHADING_RATIO_MAX <= shading <= SHADING_RATIO_MAX:
            all_warnings.append(f"muscle signal differs {max(shading, 1 / shading):.1f}-fold between the hips after "
                                "bias correction (coil shading): each hip is measured on its own tissue scale")
    refs = "; ".join(f"{s}: {r.reference}" for s, r in sides.items() if r.reference) or "none"
    statement = (f"Series: {fluid_label}" + (f" with {t1_label}" if t1_used else " (no T1)") +
                 f". Reference marrow: {refs}.")
    if all_warnings:
        statement += " Warnings: " + "; ".join(all_warnings) + "."
    return Quality(statement=statement, warnings=all_warnings, fat_suppression_ok=fat_sat_ok,
                   confidence=confidence)
