# mypy: disallow-untyped-calls=False
"""Quality guards against the classic mimics of marrow oedema.

Failed fat suppression is judged per hip from the study's own tissues (``tissues.py``).

Motion ghosts and wrap-around live along the phase-encode direction and are judged from the
image itself, never from header geometry (scanners oversample in phase, so anatomy reaching the
edge of the field of view is normal): periodic replicas of the anatomy (autocorrelation along
each image axis) and an image that continues across its own edges (aliased anatomy folds back
over the opposite side). A femoral head they corrupt is withheld (``check_phase_encode_artefacts``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from workers.analysis.anatomy import SIDES, FemurGeometry, Localization, WorkingImages, body_mask
from workers.analysis.params import AnalysisParameters
from workers.analysis.result import Side

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]

# --- motion ghosts and wrap-around along the phase-encode direction -----------------------------

PHASE_AXES: dict[str, int] = {"COL": 1, "ROW": 2}  # numpy axis of a (slices, rows, cols) stack
GHOST_MIN_LAG_PX = 6  # replicas closer than this are not told apart from the anatomy's own texture
GHOST_SHARE_MAX = 0.15  # predicted ghost signal over a head / the head's signal: more = corrupted
ARTEFACT_PIXEL_MM = 3.0  # the checks run on the fluid-sensitive series binned in plane to about this
SEAM_SEPARATIONS_MM = (6.0, 12.0)
SEAM_CONTINUITY_MIN = 0.25  # correlation across the edges at least this: wrapped (folded) anatomy
WRAP_EDGE_MIN = 0.15  # and tissue fills at least this fraction of both edges
WRAP_MARGIN_MM = 5.0  # folded tissue this close to a head counts as over it
WRAP_DEFAULT_FRACTION = 1.0 / 3.0


@dataclass(frozen=True)
class PhaseEncodeCheck:
    """Motion ghosting found on the fluid-sensitive series, and which hips it corrupts."""

    ghost_axis: str | None  # "ROW" | "COL": along which image axis replicas were found
    ghost_lag_mm: float | None
    ghost_prominence: dict[str, float]  # per image axis: autocorrelation peak above its surroundings
    ghost_share: dict[Side, float | None]  # predicted ghost signal over each head / the head's signal
    seam_correlation: dict[str, float]  # per image axis: correlation of the anatomy across the two edges
    wrap_axis: str | None  # "ROW" | "COL": the axis along which the image is continuous across its edges
    corrupted: dict[Side, str]  # side -> why it is withheld


def _autocorrelation_peak(high: FloatArray, axis: int) -> tuple[int, float]:
    """(lag, prominence) of the strongest replica of the high-passed stack along ``axis``: the
    normalised autocorrelation at the lag minus the mean at lags 3-5 pixels either side."""
    n = high.shape[axis]
    den = float(np.sum(high * high))
    if den <= 0 or n < 4 * GHOST_MIN_LAG_PX:
        return 0, 0.0
    spectrum = np.fft.rfft(high, axis=axis)
    power = (spectrum * np.conj(spectrum)).real
    other = tuple(a for a in range(high.ndim) if a != axis)
    corr = np.fft.irfft(power.sum(axis=other), n=n) / den  # circular, like np.roll
    best_lag, best = 0, 0.0
    for lag in range(GHOST_MIN_LAG_PX, n // 2 + 1):
        around = [corr[lag + d] for d in (-5, -4, -3, 3, 4, 5) if GHOST_MIN_LAG_PX - 3 <= lag + d < corr.size]
        prominence = float(corr[lag] - np.mean(around))
        if prominence > best:
            best_lag, best = lag, prominence
    return best_lag, best


def _head_voxels(image: sitk.Image, femur: FemurGeometry, shape: tuple[int, ...]) -> BoolArray:
    """Voxels of ``image`` within 0.8 x the head radius of the head centre."""
    idx = np.asarray(image.TransformPhysicalPointToContinuousIndex(femur.centre))
    spacing = np.asarray(image.GetSpacing())
    r_px = 0.8 * femur.radius_mm / spacing
    k, r, c = np.ogrid[:shape[0], :shape[1], :shape[2]]
    d2 = ((c - idx[0]) / r_px[0]) ** 2 + ((r - idx[1]) / r_px[1]) ** 2 + ((k - idx[2]) / r_px[2]) ** 2
    out: BoolArray = d2 <= 1.0
    return out


def _coarse(image: sitk.Image) -> sitk.Image:
    """``image`` binned in plane to about ``ARTEFACT_PIXEL_MM`` pixels (geometry kept), for speed."""
    spacing = image.GetSpacing()
    factors = [max(1, int(round(ARTEFACT_PIXEL_MM / float(spacing[i])))) for i in (0, 1)]
    if factors == [1, 1]:
        return image
    binned: sitk.Image = sitk.BinShrink(image, [factors[0], factors[1], 1])
    return binned


def check_phase_encode_artefacts(fluid_image: sitk.Image, t1_image: sitk.Image | None, loc: Localization,
                                 params: AnalysisParameters) -> PhaseEncodeCheck:
    """Motion ghosts on the fluid-sensitive series, per femoral head: periodic replicas of the anatomy
    along an image axis.

    The stack is band-passed and autocorrelated along each in-plane axis; natural anatomy
    decorrelates smoothly, ghosts give a sharp peak at their spacing. The ghost amplitude (about
    half the peak) times the image shifted by that lag predicts the ghost signal over each head;
    a head where it is a sizeable share of the head's own signal is corrupted.
    """
    coarse = _coarse(fluid_image)
    arr = sitk.GetArrayFromImage(coarse).astype(np.float32)
    high = ndimage.gaussian_filter(arr, (0, 1, 1)) - ndimage.gaussian_filter(arr, (0, 6, 6))
    prominence: dict[str, float] = {}
    lags: dict[str, int] = {}
    for name, axis in PHASE_AXES.items():
        lags[name], prominence[name] = _autocorrelation_peak(high, axis)
    corrupted: dict[Side, str] = {}
    share: dict[Side, float | None] = {"right": None, "left": None}
    strongest = max(prominence, key=lambda a: prominence[a])
    ghost_axis: str | None = None
    ghost_lag_mm: float | None = None
    if prominence[strongest] >= params.ghost_prominence_min:
        ghost_axis = strongest
        axis = PHASE_AXES[ghost_axis]
        lag = lags[ghost_axis]
        ghost_lag_mm = round(lag * float(coarse.GetSpacing()[2 - axis]), 1)
        amplitude = prominence[ghost_axis] / 2.0
        smooth = ndimage.gaussian_filter(arr, 1.0)
        ghost = amplitude * (np.roll(smooth, lag, axis=axis) + np.roll(smooth, -lag, axis=axis))
        for side, _ in SIDES:
            femur = loc.femurs[side]
            if femur is None:
                continue
            head = _head_voxels(coarse, femur, arr.shape)
            if head.sum() < 5:
                continue
            value = round(float(ghost[head].mean() / max(float(smooth[head].mean()), 1e-6)), 2)
            share[side] = value
            if value > GHOST_SHARE_MAX:
                corrupted[side] = (f"motion ghosts along the image {ghost_axis.lower()}s (replicas every "
                                   f"{ghost_lag_mm:.0f} mm, about {100 * amplitude:.0f}% of the source) over "
                                   f"the {side} femoral head")
    full = sitk.GetArrayFromImage(fluid_image).astype(np.float32)
    spacing = fluid_image.GetSpacing()
    seam = {name: round(_seam_continuity(full, axis, float(spacing[2 - axis])), 2) for name, axis in PHASE_AXES.items()}
    wrapped = [name for name, axis in PHASE_AXES.items()
               if seam[name] >= SEAM_CONTINUITY_MIN and _edge_tissue(full, axis) >= WRAP_EDGE_MIN]
    wrap_axis = max(wrapped, key=lambda a: seam[a]) if wrapped else None
    if wrap_axis is not None:
        _mark_wrapped(fluid_image, t1_image, loc, wrap_axis, seam[wrap_axis], corrupted)
    return PhaseEncodeCheck(ghost_axis=ghost_axis, ghost_lag_mm=ghost_lag_mm,
                            ghost_prominence={k: round(v, 3) for k, v in prominence.items()},
                            ghost_share=share, seam_correlation=seam, wrap_axis=wrap_axis, corrupted=corrupted)


def _correlation(a: FloatArray, b: FloatArray) -> float:
    a, b = a.ravel(), b.ravel()
    if float(a.std()) == 0.0 or float(b.std()) == 0.0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _seam_continuity(arr: FloatArray, axis: int, pixel_mm: float) -> float:
    """How far the image continues across its two edges along ``axis``: the correlation of lines
    ``SEAM_SEPARATIONS_MM`` apart across the seam (the last lines with the first), averaged.

    A phase-encoded image without oversampling is periodic: folded anatomy continues the anatomy at
    the opposite edge, centimetres deep. With oversampling the two edges are unrelated. (Interpolation
    in k-space makes the outermost pixel or two continuous in any case, so lines millimetres apart
    are compared.) Structure is compared as the derivative along the edge, so the body's smooth
    outline does not count: about 0 without wrap, well above it with.
    """
    other = 2 if axis == 1 else 1
    sigma = [0.0, 0.0, 0.0]
    sigma[other] = 2.0
    grad = np.gradient(ndimage.gaussian_filter(arr, sigma), axis=other).astype(np.float32)
    n = grad.shape[axis]
    values = []
    for mm in SEAM_SEPARATIONS_MM:
        sep = max(2, int(round(mm / pixel_mm)))
        if 2 * sep >= n:
            continue
        a = sep // 2
        values.append(_correlation(np.take(grad, n - 1 - a, axis=axis), np.take(grad, sep - 1 - a, axis=axis)))
    return float(np.mean(values)) if values else 0.0


def _edge_tissue(arr: FloatArray, axis: int) -> float:
    """The smaller fraction of tissue (above a quarter of the bright level) along the two edges."""
    level = 0.25 * float(np.percentile(arr, 95))
    first = float((np.take(arr, 0, axis=axis) > level).mean())
    last = float((np.take(arr, arr.shape[axis] - 1, axis=axis) > level).mean())
    return min(first, last)


@dataclass(frozen=True)
class _Extent:
    """The body of an image projected on a direction (LPS mm), and how much of each FOV edge it fills."""

    body_lo: float
    body_hi: float
    fov_lo: float
    fov_hi: float
    edge_lo: float  # fraction of the voxels within two pixels of the low edge that are body
    edge_hi: float


def _extent(image: sitk.Image, direction: FloatArray) -> _Extent:
    """Where the body of ``image`` lies along ``direction``, and whether the field of view cuts it."""
    image = _coarse(image)
    body = body_mask(sitk.GetArrayFromImage(image).astype(np.float32))
    k, r, c = np.indices(body.shape)
    pts = np.stack([c.ravel(), r.ravel(), k.ravel()], axis=1).astype(np.float64)
    mat = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())[None, :]
    u = (np.asarray(image.GetOrigin()) + pts @ mat.T) @ direction
    inside = body.ravel()
    size = np.asarray(image.GetSize(), dtype=np.float64)
    corners = np.array([[i, j, m] for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5)
                        for m in (-0.5, size[2] - 0.5)])
    cu = (np.asarray(image.GetOrigin()) + corners @ mat.T) @ direction
    lo, hi = float(cu.min()), float(cu.max())
    band = 2.0 * float(np.abs(mat.T @ direction).max())
    near_lo, near_hi = u <= lo + band, u >= hi - band
    if not inside.any():
        return _Extent(0.0, 0.0, lo, hi, 0.0, 0.0)
    return _Extent(body_lo=float(np.percentile(u[inside], 0.1)), body_hi=float(np.percentile(u[inside], 99.9)),
                   fov_lo=lo, fov_hi=hi, edge_lo=float(inside[near_lo].mean()) if near_lo.any() else 0.0,
                   edge_hi=float(inside[near_hi].mean()) if near_hi.any() else 0.0)


def _mark_wrapped(fluid_image: sitk.Image, t1_image: sitk.Image | None, loc: Localization, axis_name: str,
                  continuity: float, corrupted: dict[Side, str]) -> None:
    """Mark the heads the folded anatomy reaches: it folds in from each edge as deep as the body runs
    on beyond the opposite edge, measured on the T1 when the T1 covers more; otherwise
    ``WRAP_DEFAULT_FRACTION`` of the field of view (stated in the reason)."""
    d = np.asarray(fluid_image.GetDirection()).reshape(3, 3)
    direction = d[:, 0] if axis_name == "ROW" else d[:, 1]
    fluid = _extent(fluid_image, direction)
    fov = fluid.fov_hi - fluid.fov_lo
    depth_lo = depth_hi = WRAP_DEFAULT_FRACTION * fov  # folded in at the low / high edge
    how = f"fold depth unknown, {100 * WRAP_DEFAULT_FRACTION:.0f}% of the field of view assumed"
    if t1_image is not None:
        t1 = _extent(t1_image, direction)
        if t1.edge_lo < WRAP_EDGE_MIN and t1.edge_hi < WRAP_EDGE_MIN:
            depth_lo = max(t1.body_hi - fluid.fov_hi, 0.0)  # beyond the high edge folds in at the low edge
            depth_hi = max(fluid.fov_lo - t1.body_lo, 0.0)
            how = f"{depth_hi:.0f} mm and {depth_lo:.0f} mm of anatomy beyond the two edges (on the T1)"
    for side, _ in SIDES:
        femur = loc.femurs[side]
        if femur is None or side in corrupted:
            continue
        u = float(np.asarray(femur.centre) @ direction)
        lo, hi = u - femur.radius_mm - WRAP_MARGIN_MM, u + femur.radius_mm + WRAP_MARGIN_MM
        if lo <= fluid.fov_lo + depth_lo or hi >= fluid.fov_hi - depth_hi:
            edges = "left and right" if axis_name == "ROW" else "top and bottom"
            corrupted[side] = (f"wrap-around: the image continues across its {edges} edges "
                               f"(correlation across them {continuity:.2f}), folded anatomy reaches the "
                               f"{side} femoral head ({how})")



# --- metal (arthroplasty, screws) ----------------------------------------------------------------

METAL_T1_VOID = 0.1  # a metal void on T1: below this x the body's median (fat and muscle are far above)
METAL_FLUID_VOID = 0.5  # and on the fluid-sensitive series not brighter than half the body's median
METAL_CORE_DEPTH_MM = 4.0  # a void at least 8 mm thick somewhere (cortex, vessels and tendons are thinner)
METAL_MIN_ML = 2.0  # of such thick void
METAL_LATERAL_MM = (50.0, 170.0)  # from the midline: where a hip's implant lies
METAL_RIM_BRIGHT = 2.5  # without a T1: a pile-up rim at least this x the body's median ...
METAL_RIM_FRACTION = 0.2  # ... around at least this share of the void (suppressed fatty marrow has none)


def metal_implants(work: WorkingImages, mid_x: float) -> dict[Side, str]:
    """Sides with a metal implant: a signal void thicker than any normal dark tissue (cortex,
    tendon, vessel), lying where the hip is - black on T1 (where fat and muscle are bright) and not
    bright on the fluid-sensitive series; without a T1, dark on the fluid-sensitive series with a
    bright pile-up rim around it (suppressed fatty marrow is dark too, but rimmed by cortex). The
    reason says what was seen."""
    body = ndimage.binary_fill_holes(work.body)
    if not body.any():
        return {}
    fluid = ndimage.gaussian_filter(work.fluid, 1.0)  # noise must not perforate a void
    fluid_median = float(np.median(work.fluid[body]))
    void = body & (fluid < np.float32(METAL_FLUID_VOID * fluid_median))
    if work.t1 is not None:
        void &= ndimage.gaussian_filter(work.t1, 1.0) < np.float32(METAL_T1_VOID * float(np.median(work.t1[body])))
    depth = ndimage.distance_transform_edt(void, sampling=work.spacing)
    labels, n = ndimage.label(depth >= METAL_CORE_DEPTH_MM)
    found: dict[Side, str] = {}
    voxel_ml = work.spacing**3 / 1000.0
    for i in range(1, n + 1):
        core = labels == i
        zz, yy, xx = np.nonzero(core)
        core_ml = len(zz) * voxel_ml
        if core_ml < METAL_MIN_ML:
            continue
        offset = float(work.to_lps(np.array([zz.mean(), yy.mean(), xx.mean()]))[0]) - mid_x
        if not METAL_LATERAL_MM[0] <= abs(offset) <= METAL_LATERAL_MM[1]:
            continue
        if work.t1 is None:
            grown = ndimage.binary_dilation(core, iterations=int(round(METAL_CORE_DEPTH_MM / work.spacing)) + 1)
            rim = ndimage.binary_dilation(grown, iterations=2) & ~grown & body
            if not rim.any() or float((fluid[rim] >= METAL_RIM_BRIGHT * fluid_median).mean()) < METAL_RIM_FRACTION:
                continue
        side: Side = "left" if offset > 0 else "right"
        seen = ("black on T1, not bright on the fluid-sensitive series" if work.t1 is not None
                else "dark on the fluid-sensitive series with a bright pile-up rim")
        found[side] = (f"not assessable: metal implant (a signal void {seen}, {core_ml:.0f} mL of it more "
                       f"than {2 * METAL_CORE_DEPTH_MM:.0f} mm thick, at the {side} hip)")
    return found
