# mypy: disallow-untyped-calls=False
"""The oedema analysis of one study: fluid-sensitive series (+ optional T1) -> sides, quality, maps.

Pure numpy/SimpleITK/scipy. Stages (timed): prepare, anatomy, quality, score, measure.
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

from workers.analysis.anatomy import (
    SIDES,
    FemurGeometry,
    Localization,
    WorkingImages,
    body_mask,
    locate_femurs,
)
from workers.analysis.maps import AnalysisMaps
from workers.analysis.measure import classify_pattern, effusion, measure_regions
from workers.analysis.oedema import (
    MIN_REFERENCE_VOXELS,
    Reference,
    RobustStats,
    candidate_mask,
    clean_mask,
    confirm_by_t1,
    excess_fraction,
    lesion_boundary,
    robust_stats,
)
from workers.analysis.params import AnalysisParameters
from workers.analysis.preparation import (
    BiasCorrected,
    Block,
    axis_aligned_grid,
    block_around,
    block_coordinates,
    fit_bias,
    like,
    sub_image,
    voxel_volume_ml,
)
from workers.analysis.quality import (
    FatSatCheck,
    PhaseEncodeCheck,
    check_fat_suppression,
    check_phase_encode_artefacts,
    ghost_ratios,
)
from workers.analysis.regions import (
    REGION_NAMES,
    FemurFrame,
    bone_outline,
    connected_to,
    femur_frame,
    femur_regions,
    shaft_marrow,
)
from workers.analysis.result import REGION_LABELS, Quality, RegionName, Side, SideResult

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]
Progress = Callable[[str], None]

SIDE_LABEL: dict[Side, int] = {"right": 1, "left": 2}
MIN_T1_COVERAGE = 0.5
SHAFT_REFERENCE_DEPTH_MM = (70.0, 120.0)  # subtrochanteric shaft marrow: this far below the head centre


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
class _SideData:
    femur: FemurGeometry
    block: Block
    fluid: FloatArray
    t1: FloatArray | None
    frame: FemurFrame
    regions: dict[RegionName, BoolArray]
    roi: BoolArray
    bone: BoolArray
    own: dict[RegionName, RobustStats | None]
    pooled: RobustStats | None
    shaft: RobustStats | None


def _prepare(fluid_image: sitk.Image, t1_image: sitk.Image | None, params: AnalysisParameters,
             warnings: list[str]) -> tuple[BiasCorrected, BiasCorrected | None, WorkingImages]:
    fluid = fit_bias(fluid_image, shrink_mm=params.n4_shrink_mm, iterations=params.n4_iterations)
    t1: BiasCorrected | None = None
    if t1_image is not None:
        coverage = _coverage(t1_image, fluid_image)
        if coverage < MIN_T1_COVERAGE:
            warnings.append(f"T1 covers only {100 * coverage:.0f}% of the fluid-sensitive volume; T1 not used")
        else:
            t1 = fit_bias(t1_image, shrink_mm=params.n4_shrink_mm, iterations=params.n4_iterations)
    grid = axis_aligned_grid(fluid_image, params.working_spacing_mm)
    t1_work = t1.on(grid) if t1 is not None else None
    fluid_work = fluid.on(grid)
    body = body_mask(t1_work if t1_work is not None else fluid_work)
    work = WorkingImages(grid=grid, t1=t1_work, fluid=fluid_work, body=body)
    return fluid, t1, work


def side_block(image: sitk.Image, femur: FemurGeometry, params: AnalysisParameters) -> Block:
    """The voxels of ``image`` that can hold this femur's regions, shaft reference and effusion shell."""
    c = np.asarray(femur.centre)
    base = c + femur.neck_length_mm * np.asarray(femur.neck_axis)
    low = c - np.array([0.0, 0.0, SHAFT_REFERENCE_DEPTH_MM[1]])
    low[0] = base[0]
    margin = max(femur.radius_mm + params.effusion_shell_mm, params.intertrochanteric_radius_mm) + 8.0
    pts = [(float(p[0]), float(p[1]), float(p[2])) for p in (c, base, low)]
    return block_around(image, pts, margin)


def side_oedema(fluid: FloatArray, t1: FloatArray | None, regions: dict[RegionName, BoolArray], roi: BoolArray,
                ref: Reference, voxel_mm3: float, params: AnalysisParameters) -> BoolArray:
    """Oedema mask of one hip, by hysteresis: seeds are voxels above the robust reference threshold
    (Q3 + k IQR, SIR); the outline is the half-maximum level between the reference and the seeds'
    plateau, grown from the seeds (so noise neither invents lesions nor erodes real ones). Then
    clean-up, intertrochanteric oedema only where it continues head/neck oedema, and confirmation
    by low T1."""
    seeds = np.zeros(fluid.shape, dtype=bool)
    for name in REGION_NAMES:
        seeds |= candidate_mask(fluid, t1, regions[name], ref, name, params)
    seeds = clean_mask(seeds, roi, voxel_mm3, params)
    above = np.zeros(fluid.shape, dtype=bool)
    for name in REGION_NAMES:
        stats = ref.per_region[name]
        level = lesion_boundary(fluid, seeds, stats.median, params)
        region_above = regions[name] & (fluid >= level)
        if t1 is not None and stats.t1_median is not None and ref.kind != "muscle":
            region_above &= t1 <= params.t1_fatty_min * stats.t1_median
        above |= region_above
    mask = clean_mask(connected_to(above, seeds & above), roi, voxel_mm3, params)
    # intertrochanteric oedema is reported as the extension of head/neck oedema, never on its own
    head_neck = mask & (regions["head"] | regions["neck"])
    if float(head_neck.sum()) * voxel_mm3 / 1000.0 >= params.present_min_ml:
        mask = head_neck | connected_to(mask & regions["intertrochanteric"], head_neck)
    else:
        mask = head_neck
    if ref.kind != "muscle":
        mask = confirm_by_t1(mask, t1, ref.per_region["head"].t1_median, params)
    return mask


def _marrow_like(t1: FloatArray | None, fatsat: FatSatCheck, params: AnalysisParameters,
                 fraction: float) -> BoolArray | None:
    """Voxels whose T1 is at least ``fraction`` x subcutaneous fat: with ``marrow_t1_min``, marrow (normal
    or oedematous) and fat, not muscle or cortex; with ``head_t1_min``, not cartilage or fluid."""
    if t1 is None or fatsat.fat_t1_median is None:
        return None
    out: BoolArray = t1 >= fraction * fatsat.fat_t1_median
    return out


def _coverage(moving: sitk.Image, reference: sitk.Image) -> float:
    """Fraction of ``reference``'s voxels (sampled on a coarse lattice) that lie inside ``moving``."""
    nx, ny, nz = reference.GetSize()
    size = np.asarray(moving.GetSize(), dtype=np.float64)
    inside = total = 0
    for k in range(0, nz, max(1, nz // 8)):
        for j in range(0, ny, max(1, ny // 16)):
            for i in range(0, nx, max(1, nx // 16)):
                idx = np.asarray(moving.TransformPhysicalPointToContinuousIndex(
                    reference.TransformIndexToPhysicalPoint((i, j, k))))
                inside += int(bool(np.all(idx >= -0.5) and np.all(idx <= size - 0.5)))
                total += 1
    return inside / max(total, 1)


def _side_data(femur: FemurGeometry, fluid_bias: BiasCorrected, t1_bias: BiasCorrected | None,
               fluid_image: sitk.Image, fatsat: FatSatCheck, params: AnalysisParameters) -> _SideData:
    block = side_block(fluid_image, femur, params)
    grid = sub_image(fluid_image, block)
    fluid = fluid_bias.on(grid)
    t1 = t1_bias.on(grid) if t1_bias is not None else None
    coords = block_coordinates(fluid_image, block)
    frame = femur_frame(femur, coords)
    regions = femur_regions(femur, frame, _marrow_like(t1, fatsat, params, params.marrow_t1_min), params,
                            _marrow_like(t1, fatsat, params, params.head_t1_min))
    bone = bone_outline(femur, frame, params)
    roi = regions["head"] | regions["neck"] | regions["intertrochanteric"]
    own = {name: robust_stats(fluid, t1, regions[name]) for name in REGION_NAMES}
    pooled = robust_stats(fluid, t1, regions["head"] | regions["neck"])
    shaft_mask = shaft_marrow(femur, coords, SHAFT_REFERENCE_DEPTH_MM)
    shaft = robust_stats(fluid, t1, shaft_mask & ~bone) if shaft_mask is not None else None
    return _SideData(femur=femur, block=block, fluid=fluid, t1=t1, frame=frame, regions=regions, roi=roi,
                     bone=bone, own=own, pooled=pooled, shaft=shaft)


def _affected(data: dict[Side, _SideData], params: AnalysisParameters) -> dict[Side, bool]:
    """Is a side's head+neck marrow brighter than normal marrow (its shaft, else the other hip)?"""
    out: dict[Side, bool] = {}
    for side, d in data.items():
        head_neck = d.regions["head"] | d.regions["neck"]
        other = [o for s, o in data.items() if s != side]
        ref = d.shaft or next((o.shaft for o in other if o.shaft is not None), None)
        if ref is not None:
            out[side] = excess_fraction(d.fluid, head_neck, ref, params) > params.affected_fraction
        elif other and other[0].pooled is not None:
            o = other[0]
            mine = excess_fraction(d.fluid, head_neck, other[0].pooled, params)
            theirs = (excess_fraction(o.fluid, o.regions["head"] | o.regions["neck"], d.pooled, params)
                      if d.pooled is not None else 0.0)
            out[side] = mine > params.affected_fraction and mine > theirs
        else:
            out[side] = False
    return out


def _choose_reference(side: Side, data: dict[Side, _SideData], affected: dict[Side, bool],
                      muscle: RobustStats | None, fatsat: FatSatCheck) -> Reference | None:
    """Contralateral matching region (unaffected, fat suppression working there), else ipsilateral
    shaft marrow, else muscle; None when there is none of them."""
    other_side: Side = "left" if side == "right" else "right"
    other = data.get(other_side)
    usable = other is not None and not affected[other_side] and fatsat.ok.get(other_side) is not False
    if other is not None and usable and other.pooled is not None:
        per_region = {name: other.own[name] or other.pooled for name in REGION_NAMES}
        return Reference(kind="contralateral", description=f"contralateral ({other_side}) matching region",
                         per_region=per_region)
    mine = data[side]
    shaft = mine.shaft
    if shaft is not None:
        return Reference(kind="ipsilateral shaft", description=f"ipsilateral ({side}) subtrochanteric shaft marrow",
                         per_region=dict.fromkeys(REGION_NAMES, shaft))
    if muscle is not None:
        return Reference(kind="muscle", description="muscle (marrow-to-muscle ratio)",
                         per_region=dict.fromkeys(REGION_NAMES, muscle))
    return None


def _fluid_bright_level(fatsat: FatSatCheck, ref: Reference, params: AnalysisParameters) -> float:
    """Free fluid: ``effusion_level_fraction`` of the way from soft tissue (muscle) to the study's fluid
    peak (bladder), and well above marrow."""
    floor = params.effusion_sir_min * ref.per_region["head"].median if ref.kind != "muscle" else 0.0
    if fatsat.fluid_peak is None or fatsat.muscle_median is None:
        return max(floor, 2.0 * ref.per_region["head"].median)
    return max(floor, fatsat.muscle_median + params.effusion_level_fraction * (fatsat.fluid_peak - fatsat.muscle_median))


def _muscle_stats(fatsat: FatSatCheck) -> RobustStats | None:
    if fatsat.muscle_median is None or fatsat.muscle_median <= 0:
        return None
    m = fatsat.muscle_median
    return RobustStats(median=m, q1=m, q3=m, t1_median=None, n=MIN_REFERENCE_VOXELS)


def _withheld(femur: FemurGeometry, reason: str) -> SideResult:
    return SideResult(side=femur.side, localized=True, reason=reason, head_centre_lps_mm=femur.centre,
                      head_radius_mm=round(femur.radius_mm, 1))


def analyze_images(
    fluid_image: sitk.Image,
    t1_image: sitk.Image | None,
    params: AnalysisParameters | None = None,
    *,
    timer: StageTimer | None = None,
    fluid_label: str = "fluid-sensitive series",
    t1_label: str = "T1",
    phase_encoding: str | None = None,
) -> SeriesAnalysis:
    """Map oedema in both hips. Geometry in LPS; the maps are on ``fluid_image``'s grid.

    ``phase_encoding``: the fluid-sensitive series' InPlanePhaseEncodingDirection ("ROW"/"COL"), which
    the wrap-around check needs; motion ghosts are looked for along both image axes."""
    params = params or AnalysisParameters()
    timer = timer or StageTimer()
    warnings: list[str] = []
    with timer.stage("prepare", "preparing images (bias correction, T1 onto the fluid-sensitive grid)"):
        fluid_bias, t1_bias, work = _prepare(fluid_image, t1_image, params, warnings)
    with timer.stage("anatomy", "locating femoral heads and necks"):
        loc = locate_femurs(work, params)
    with timer.stage("quality", "checking fat suppression and motion/wrap-around ghosts"):
        fatsat = check_fat_suppression(work, loc, params)
        ghosts = ghost_ratios(work, loc)
        phase = check_phase_encode_artefacts(fluid_image, t1_image if t1_bias is not None else None, loc,
                                             phase_encoding, params)

    shape = tuple(reversed(fluid_image.GetSize()))
    score_full = np.zeros(shape, dtype=np.float32)
    oedema_full = np.zeros(shape, dtype=np.uint8)
    regions_full = np.zeros(shape, dtype=np.uint8)
    effusion_full = np.zeros(shape, dtype=np.uint8)
    sides: dict[Side, SideResult] = {}
    for side, _ in SIDES:
        if loc.femurs[side] is None:
            sides[side] = SideResult(side=side, localized=False, reason=loc.reasons.get(side, "not localised"))
    found = {s: f for s, f in loc.femurs.items() if f is not None}
    references: dict[Side, str] = {}
    if found:
        with timer.stage("score", "scoring marrow signal against the reference"):
            every = {s: _side_data(f, fluid_bias, t1_bias, fluid_image, fatsat, params) for s, f in found.items()}
            # a hip corrupted by motion or wrap-around is neither measured nor the other hip's reference
            data = {s: d for s, d in every.items() if s not in phase.corrupted}
            affected = _affected(data, params)
            muscle = _muscle_stats(fatsat)
            masks: dict[Side, BoolArray] = {}
            refs: dict[Side, Reference | None] = {}
            vox_mm3 = voxel_volume_ml(fluid_image) * 1000.0
            for side, d in data.items():
                ref = _choose_reference(side, data, affected, muscle, fatsat)
                refs[side] = ref
                if ref is None:
                    continue
                masks[side] = side_oedema(d.fluid, d.t1, d.regions, d.roi, ref, vox_mm3, params)
                references[side] = ref.description
        with timer.stage("measure", "measuring oedema, effusion and pattern"):
            maps_full = (score_full, oedema_full, effusion_full)
            for side, d in every.items():
                sub = regions_full[d.block.slices]  # the anatomy is drawn even where numbers are withheld
                for name in REGION_NAMES:
                    sub[d.regions[name] & (sub == 0)] = REGION_LABELS[(side, name)]
                if side in phase.corrupted:
                    msg = _phase_artefact_message(side, phase)
                    warnings.append(msg)
                    sides[side] = _withheld(d.femur, msg)
                    continue
                ghost = ghosts.get(side)
                if ghost is not None and ghost > params.ghost_ratio_max:
                    msg = (f"motion or wrap-around ghosts over the {side} hip (ghost ratio {ghost:.1f} > "
                           f"{params.ghost_ratio_max:.1f}); result withheld")
                    warnings.append(msg)
                    sides[side] = _withheld(d.femur, msg)
                    continue
                sides[side] = _measure_side(side, d, masks.get(side), refs[side], fatsat, fluid_image, params,
                                            warnings, maps_full)
    t1_used = t1_bias is not None
    quality = _quality(sides, fatsat, loc, references, warnings, fluid_label, t1_label, t1_used)
    maps = AnalysisMaps(
        score=like(score_full, fluid_image),
        oedema=like(oedema_full, fluid_image),
        regions=like(regions_full, fluid_image),
        effusion=like(effusion_full, fluid_image),
    )
    return SeriesAnalysis(sides=sides, quality=quality, maps=maps, localization=loc, t1_used=t1_used)


def _phase_artefact_message(side: Side, phase: PhaseEncodeCheck) -> str:
    kind = "wrap-around" if phase.corrupted[side].startswith("wrap") else "motion"
    return f"{kind} artefact: {phase.corrupted[side]}; {side} result withheld (no oedema can be measured through it)"


def _measure_side(
    side: Side, d: _SideData, mask: BoolArray | None, ref: Reference | None, fatsat: FatSatCheck,
    fluid_img: sitk.Image, params: AnalysisParameters, warnings: list[str],
    maps_full: tuple[FloatArray, npt.NDArray[np.uint8], npt.NDArray[np.uint8]],
) -> SideResult:
    femur, fluid, t1, block = d.femur, d.fluid, d.t1, d.block
    score_full, oedema_full, effusion_full = maps_full
    if ref is None or mask is None:
        return _withheld(femur, "no usable reference marrow or muscle on this side")
    if fatsat.ok.get(side) is False:
        msg = (f"fat suppression failed or inhomogeneous on the {side} side "
               f"(fat/muscle {fatsat.ratio[side]} on the fluid-sensitive series)")
        if t1 is None:
            warnings.append(msg + "; result withheld (no T1 to confirm)")
            return _withheld(femur, msg + "; withheld without a T1 to confirm")
        warnings.append(msg + "; oedema confirmed by low T1 only, confidence reduced")
    voxel_ml = voxel_volume_ml(fluid_img)
    head_ref = ref.per_region["head"]
    fluid_ref = head_ref.median
    t1_ref = head_ref.t1_median
    measures = measure_regions(d.regions, mask, fluid, t1, fluid_ref, t1_ref, voxel_ml)
    volume = float(mask.sum()) * voxel_ml
    present = volume >= params.present_min_ml
    frame = d.frame
    pattern = classify_pattern(mask, d.regions, measures, frame, femur, present, fluid, t1, fluid_ref, t1_ref, params)
    bright = _fluid_bright_level(fatsat, ref, params)
    marrow_ref = ref.per_region["head"] if ref.kind != "muscle" else None
    t1_dark = 0.6 * marrow_ref.t1_median if (marrow_ref is not None and marrow_ref.t1_median) else None
    eff = effusion(fluid, t1, femur, frame, d.bone, bright, t1_dark, voxel_ml * 1000.0, params)
    sir = fluid[mask] / fluid_ref
    t1r = t1[mask] / t1_ref if (t1 is not None and t1_ref) else None
    score_block = score_full[block.slices]
    score_block[mask] = sir
    oedema_full[block.slices][mask] = SIDE_LABEL[side]
    effusion_full[block.slices][eff.mask] = SIDE_LABEL[side]
    per_slice = mask.sum(axis=(1, 2))
    largest = int(block.z0 + int(np.argmax(per_slice))) if mask.any() else None
    n = int(mask.sum())
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
        reference=ref.description,
        largest_slice_index=largest,
    )


def _quality(sides: dict[Side, SideResult], fatsat: FatSatCheck, loc: Localization, references: dict[Side, str],
             warnings: list[str], fluid_label: str, t1_label: str, t1_used: bool) -> Quality:
    all_warnings = list(warnings) + list(loc.notes)
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
    confidence: Literal["normal", "reduced", "withheld"] = "normal"
    if withheld or missing or fatsat.all_ok is False or not t1_used:
        confidence = "reduced"
    if len(withheld) + len(missing) == 2:
        confidence = "withheld"
    ref_text = "; ".join(f"{s}: {r}" for s, r in references.items()) or "none"
    statement = (f"Series: {fluid_label}" + (f" with {t1_label}" if t1_used else " (no T1)") +
                 f". Reference marrow: {ref_text}.")
    if all_warnings:
        statement += " Warnings: " + "; ".join(all_warnings) + "."
    return Quality(statement=statement, warnings=all_warnings, fat_suppression_ok=fatsat.all_ok,
                   confidence=confidence)
