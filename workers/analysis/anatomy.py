# mypy: disallow-untyped-calls=False
"""Anatomy: both femoral heads (sphere), neck axes and radii, on an isotropic LPS working grid.

Method (DOMAIN.md section 2, no trained network):
1. Gradient sphere Hough: every strong edge voxel votes at distances 18-30 mm along and
   against its gradient; a femoral head collects votes from its marrow/cortex, cartilage and
   acetabular outlines, which share one centre.
2. Each candidate centre (accumulator peak, sub-voxel) gets a radius from the mean edge profile
   on 256 rays and a "sphericity": the fraction of rays whose edge lies on one sphere (low when
   motion, wrap-around or a displaced head breaks the outline).
3. Gates: radius 18-30 mm, left-right separation 150-210 mm, cranio-caudal and antero-posterior
   agreement, mid-point of the pair near the body centre (symmetry).
4. Neck axis: the femoral shaft is found as circles (radius 9-18 mm) on axial cuts below the head;
   a first axis runs from the head centre to the shaft axis at the average neck-shaft angle
   (without a shaft: lateral, 40 degrees below the horizontal, recorded). That only says where to
   look: the axis is then measured as the direction in which the head's cortical outline opens
   into the neck (``measured_neck_axis``), and the neck base is where that axis passes the shaft.

Side comes only from LPS x: +x is patient left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage
from skimage.filters import threshold_otsu

from workers.analysis.params import AnalysisParameters
from workers.analysis.result import Side

FloatArray = npt.NDArray[np.float32]
Vec = npt.NDArray[np.float64]

#: Femoral neck radius / head radius (DOMAIN.md 2.1: 16.1/24.5 male, 13.8/21.9 female).
NECK_TO_HEAD_RADIUS = 0.63

#: A field of view at least this wide (LPS x) shows the whole pelvis, so the body's centre is the midline.
FULL_PELVIS_FOV_MM = 300.0
EDGE_COLUMNS = 4
FLAT_FIELD_MM = 40.0  # shading is slower than this; the femoral head (48 mm) still stands out
#: Lateral thirds of the body this many times apart in brightness: strong left-right coil shading,
#: which the body mask and the edge strengths are made independent of (anatomy alone gives ~1-1.3).
SHADED_RATIO = 1.6
NECK_RAYS = 2048  # rays over the whole sphere when looking for the neck's opening in the head outline
NECK_SEARCH_DEG = 40.0  # the neck is looked for within this angle of the shaft-derived axis
NECK_OPEN_FRACTION = 0.5  # a ray enters the neck when its surface edge is below this x the median ray's
NECK_ITERATIONS = 4
MIN_NECK_RAYS = 12
MIN_NECK_MM, MAX_NECK_MM = 10.0, 70.0  # plausible neck base: this far beyond the head surface
RAY_TOLERANCE_MM = 3.0  # a ray's edge within this of the rays' median radius lies on the head's sphere
MIN_IMAGED_RAYS = 64  # of 256: a head less than a quarter inside the imaged volume is not fitted  # the body "reaches" an edge of the working grid within this many columns

#: Each side with its lateral direction in LPS x (+x = patient left).
SIDES: tuple[tuple[Side, float], ...] = (("right", -1.0), ("left", 1.0))


@dataclass(frozen=True)
class FemurGeometry:
    """One proximal femur in LPS mm."""

    side: Side
    centre: tuple[float, float, float]
    radius_mm: float
    neck_axis: tuple[float, float, float]  # unit vector from the head centre towards the shaft
    neck_radius_mm: float
    neck_length_mm: float  # head centre to the neck base on the shaft axis (measured or average)
    edge_coherence: float
    shaft_found: bool
    shaft_point: tuple[float, float, float] | None = None
    shaft_direction: tuple[float, float, float] | None = None  # unit, pointing cranially
    notes: tuple[str, ...] = ()

    @property
    def lateral(self) -> float:
        """+1 when lateral is +x (left hip), -1 for the right hip."""
        return 1.0 if self.side == "left" else -1.0


@dataclass(frozen=True)
class Localization:
    """Both sides: a geometry, or None with the reason."""

    femurs: dict[Side, FemurGeometry | None]
    reasons: dict[Side, str]
    body_centre_x_mm: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    imaged: dict[Side, bool] = field(default_factory=lambda: {"right": True, "left": True})


@dataclass(frozen=True)
class WorkingImages:
    """Images on the isotropic axis-aligned working grid, (z, y, x) arrays."""

    grid: sitk.Image
    t1: FloatArray | None
    fluid: FloatArray
    body: npt.NDArray[np.bool_]  # the patient's body (see ``body_mask``)
    #: (unit slice normal in LPS, slice spacing mm) of each source series: an edge across thick or
    #: gapped slices is only placed to within half a spacing along the normal
    slice_sampling: tuple[tuple[tuple[float, float, float], float], ...] = ()

    @property
    def spacing(self) -> float:
        return float(self.grid.GetSpacing()[0])

    @property
    def origin(self) -> Vec:
        return np.asarray(self.grid.GetOrigin(), dtype=np.float64)

    def to_index(self, p: Vec) -> Vec:
        """LPS (x, y, z) -> continuous (z, y, x) index."""
        xyz = (np.asarray(p, dtype=np.float64) - self.origin) / self.spacing
        return xyz[..., ::-1]

    def to_lps(self, zyx: Vec) -> Vec:
        """Continuous (z, y, x) index -> LPS (x, y, z)."""
        return np.asarray(zyx, dtype=np.float64)[..., ::-1] * self.spacing + self.origin


@dataclass(frozen=True)
class _Gradient:
    gz: FloatArray
    gy: FloatArray
    gx: FloatArray
    edge_threshold: float
    signed: bool  # True: use the negative radial derivative (bright marrow inside, T1)


def body_mask(image: FloatArray) -> npt.NDArray[np.bool_]:
    """The patient's body on a working-grid image: above half the Otsu level, largest part, holes
    filled in plane. Under strong left-right coil shading (``lateral_shading``) the level is the Otsu
    level of the log intensity instead, on which a coil's gain is a shift, small against the step
    from air to tissue, so the dark side stays in the body."""
    smooth = ndimage.gaussian_filter(image, 1.0)
    positive = smooth[smooth > 0]
    if positive.size == 0:
        return np.zeros(image.shape, dtype=bool)
    mask = _largest_filled(smooth > float(threshold_otsu(positive, nbins=256)) * 0.5)
    if lateral_shading(smooth, mask) > SHADED_RATIO:
        floor = float(np.percentile(positive, 1))
        logs = np.log(np.maximum(smooth, floor))
        mask = _largest_filled((smooth > 0) & (logs > float(threshold_otsu(logs[smooth > 0], nbins=256))))
    return mask


def _largest_filled(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    filled: npt.NDArray[np.bool_] = ndimage.binary_fill_holes(largest, structure=in_plane)
    return filled


def lateral_shading(image: FloatArray, body: npt.NDArray[np.bool_]) -> float:
    """How many times brighter the body's brighter lateral third is than the other (upper quartile
    of each): 1 without a left-right coil gradient; 1.0 when the body is too small to tell."""
    columns = np.flatnonzero(body.any(axis=(0, 1)))
    if columns.size < 9:
        return 1.0
    third = max(1, columns.size // 3)
    sides = []
    for cols in (columns[:third], columns[-third:]):
        values = image[:, :, cols][body[:, :, cols]]
        if values.size == 0:
            return 1.0
        sides.append(max(float(np.percentile(values, 75)), 1e-6))
    return max(sides) / min(sides)


def _flat_field(image: FloatArray, body: npt.NDArray[np.bool_], spacing: float) -> FloatArray:
    """``image`` over its own local mean in the body (normalised convolution over ``FLAT_FIELD_MM``):
    coil shading, however strong, no longer decides which edges are strong."""
    sigma = FLAT_FIELD_MM / spacing
    weight = ndimage.gaussian_filter(body.astype(np.float32), sigma)
    local = ndimage.gaussian_filter(np.where(body, image, 0.0).astype(np.float32), sigma)
    mean = np.where(weight > 0.05, local / np.maximum(weight, 0.05), 0.0)
    positive = mean[body]
    floor = float(np.percentile(positive, 5)) if positive.size else 1.0
    out: FloatArray = (image / np.maximum(mean, max(floor, 1e-6))).astype(np.float32)
    return out


def _gradient(image: FloatArray, body: npt.NDArray[np.bool_], spacing: float, signed: bool) -> _Gradient:
    if lateral_shading(image, body) > SHADED_RATIO:
        image = _flat_field(image, body, spacing)
    inside = image[body]
    scale = float(np.percentile(inside, 95)) if inside.size else 1.0
    if signed:  # T1: fatty marrow bright against the dark cortex
        norm = ndimage.gaussian_filter(image / max(scale, 1e-6), 1.0)
    else:  # fluid-sensitive: log intensity, so a dark (suppressed fatty) head is outlined like a bright one
        floor = max(float(np.percentile(inside, 5)) if inside.size else 0.0, 1e-3 * scale)
        norm = ndimage.gaussian_filter(np.log(np.maximum(image, floor) / max(scale, 1e-6)), 1.0)
    gz, gy, gx = (g.astype(np.float32) / spacing for g in np.gradient(norm))
    mag = np.sqrt(gz * gz + gy * gy + gx * gx)
    thr = float(np.percentile(mag[body], 85)) if inside.size else 0.0
    return _Gradient(gz=gz, gy=gy, gx=gx, edge_threshold=thr, signed=signed)


def _vote(grads: list[_Gradient], edge_zone: npt.NDArray[np.bool_], radii_vox: npt.NDArray[np.float64]) -> FloatArray:
    """Sphere Hough accumulator: each strong edge voxel in ``edge_zone`` votes at each radius, on
    both sides of the edge (a head may be brighter or darker than its surroundings)."""
    shape = edge_zone.shape
    flats = []
    for g in grads:
        mag = np.sqrt(g.gz**2 + g.gy**2 + g.gx**2)
        edges = edge_zone & (mag > g.edge_threshold)
        z, y, x = (a.astype(np.float32) for a in np.nonzero(edges))
        m = mag[edges]
        uz, uy, ux = g.gz[edges] / m, g.gy[edges] / m, g.gx[edges] / m
        for r in radii_vox:
            for sign in (1.0, -1.0):
                step = np.float32(sign * r)
                cz = np.rint(z + step * uz).astype(np.int64)
                cy = np.rint(y + step * uy).astype(np.int64)
                cx = np.rint(x + step * ux).astype(np.int64)
                ok = (cz >= 0) & (cz < shape[0]) & (cy >= 0) & (cy < shape[1]) & (cx >= 0) & (cx < shape[2])
                flats.append((cz[ok] * shape[1] + cy[ok]) * shape[2] + cx[ok])
    acc = np.bincount(np.concatenate(flats), minlength=int(np.prod(shape))) if flats else np.zeros(int(np.prod(shape)))
    out: FloatArray = ndimage.gaussian_filter(acc.reshape(shape).astype(np.float32), 1.0)
    return out


def _fibonacci_sphere(n: int) -> Vec:
    i = np.arange(n, dtype=np.float64) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


def _radial_derivative(work: WorkingImages, grads: list[_Gradient], centre: Vec, dirs: Vec, radii: Vec) -> Vec:
    """Edge strength along rays, (n_dirs, n_radii), in units of each image's edge threshold; the
    strongest of the images at each point (an outline may show on T1, on the fluid image, or both)."""
    pts = centre[None, None, :] + dirs[:, None, :] * radii[None, :, None]  # LPS
    idx = work.to_index(pts.reshape(-1, 3)).T  # (3, N) z, y, x
    total = np.zeros(pts.shape[:2], dtype=np.float64)
    for g in grads:
        comps = [ndimage.map_coordinates(a, idx, order=1, mode="nearest").reshape(pts.shape[:2]) for a in (g.gx, g.gy, g.gz)]
        d = comps[0] * dirs[:, 0:1] + comps[1] * dirs[:, 1:2] + comps[2] * dirs[:, 2:3]
        strength = -d if g.signed else np.abs(d)
        total = np.maximum(total, np.clip(strength, 0, None) / max(g.edge_threshold, 1e-9))
    return total


def _subvoxel_peak(acc: FloatArray, zyx: tuple[int, int, int]) -> Vec:
    """Centroid of the accumulator in the 3x3x3 neighbourhood of a peak (continuous index)."""
    lo = [max(0, v - 1) for v in zyx]
    hi = [min(n, v + 2) for v, n in zip(zyx, acc.shape, strict=True)]
    patch = acc[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float64)
    patch = np.clip(patch - patch.min(), 0, None)
    if patch.sum() <= 0:
        return np.asarray(zyx, dtype=np.float64)
    grid = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
    return np.array([(g * patch).sum() / patch.sum() for g in grid])


def sphere_outline(work: WorkingImages, grads: list[_Gradient], centre: Vec,
                   params: AnalysisParameters) -> tuple[float, float]:
    """Radius of the head and sphericity of its outline around a fixed centre.

    The radius is where the first image's edge is strongest on average over 256 rays (the
    marrow/cortex edge on T1), plus ``cortex_mm``. Sphericity is the fraction of rays whose
    strongest edge near that radius lies within 3 mm of the rays' median: high for a femoral
    head, low where motion or wrap-around has broken the outline.
    """
    dirs = _fibonacci_sphere(256)
    radii = np.arange(params.head_radius_min_mm - 6, params.head_radius_max_mm + 6.01, 0.5)
    # only rays that stay inside the imaged volume count (a partly covered head is still a sphere)
    seen = _imaged_rays(work, centre, dirs, params.head_radius_max_mm)
    if seen.sum() < MIN_IMAGED_RAYS:
        return float("nan"), 0.0
    dirs = dirs[seen]
    first = _radial_derivative(work, grads[:1], centre, dirs, radii)
    inside = (radii >= params.head_radius_min_mm - params.cortex_mm - 2) & (radii <= params.head_radius_max_mm)
    r_edge = float(radii[inside][int(np.argmax(first.mean(axis=0)[inside]))])
    prof = _radial_derivative(work, grads, centre, dirs, radii)
    window = (radii >= r_edge - 4.0) & (radii <= r_edge + 6.0)
    sub = prof[:, window]
    best = sub.argmax(axis=1)
    strong = sub[np.arange(len(dirs)), best] >= 0.75
    ray_r = radii[window][best]
    # on T1 the strongest edge is fatty marrow against the cortex, inside the head's surface; on a
    # fluid-sensitive series alone it is the surface (dark marrow and cortex against cartilage)
    cortex = params.cortex_mm if grads[0].signed else 0.0
    if strong.sum() < 12:
        return r_edge + cortex, float(strong.mean())
    med = float(np.median(ray_r[strong]))
    tolerance = np.full(len(dirs), RAY_TOLERANCE_MM)
    for normal, spacing in work.slice_sampling:
        tolerance = np.maximum(tolerance, 0.5 * spacing * np.abs(dirs @ np.asarray(normal)))
    sphericity = float((strong & (np.abs(ray_r - med) <= tolerance)).mean())
    return r_edge + cortex, sphericity


def _imaged_rays(work: WorkingImages, centre: Vec, dirs: Vec, reach_mm: float) -> npt.NDArray[np.bool_]:
    """Rays from ``centre`` whose point at ``reach_mm`` lies where the fluid-sensitive series has data."""
    pts = centre[None, :] + dirs * reach_mm
    idx = np.rint(work.to_index(pts)).astype(np.int64)  # (n, 3) z, y, x
    shape = np.asarray(work.fluid.shape)
    inside = np.all((idx >= 0) & (idx < shape[None, :]), axis=1)
    out = np.zeros(len(dirs), dtype=bool)
    z, y, x = idx[inside].T
    out[inside] = work.fluid[z, y, x] > 0
    return out


@dataclass(frozen=True)
class _Candidate:
    centre: Vec
    radius: float
    coherence: float
    votes: float


def _candidates(
    work: WorkingImages, grads: list[_Gradient], acc: FloatArray, body: npt.NDArray[np.bool_],
    mid_x: float, lateral: float, params: AnalysisParameters,
) -> list[_Candidate]:
    sp = work.spacing
    xs = work.origin[0] + sp * np.arange(acc.shape[2])
    off = lateral * (xs - mid_x)
    half_min = params.head_separation_min_mm / 2 - params.midline_tolerance_mm
    half_max = params.head_separation_max_mm / 2 + params.midline_tolerance_mm
    allowed_x = (off >= half_min) & (off <= half_max)
    region = body & allowed_x[None, None, :]
    masked = np.where(region, acc, 0.0)
    peaks = (masked == ndimage.maximum_filter(masked, size=max(3, int(round(12 / sp))))) & (masked > 0)
    zz, yy, xx = np.nonzero(peaks)
    order = np.argsort(masked[zz, yy, xx])[::-1][:4]
    out = []
    for n in order:
        centre = work.to_lps(_subvoxel_peak(acc, (int(zz[n]), int(yy[n]), int(xx[n]))))
        radius, coherence = sphere_outline(work, grads, centre, params)
        out.append(_Candidate(centre=centre, radius=radius, coherence=coherence, votes=float(masked[zz[n], yy[n], xx[n]])))
    return out


def _plausible(c: _Candidate, params: AnalysisParameters, min_coherence: float) -> str:
    if np.isnan(c.radius):
        return "too little of the femoral head lies inside the imaged volume to fit it"
    if not params.head_radius_min_mm <= c.radius <= params.head_radius_max_mm:
        return f"fitted femoral-head radius {c.radius:.1f} mm is outside {params.head_radius_min_mm:.0f}-{params.head_radius_max_mm:.0f} mm"
    if c.coherence < min_coherence:
        return (f"femoral-head outline unclear (edge coherence {c.coherence:.2f} < {min_coherence:.2f}); "
                "motion, wrap-around or a deformed head")
    return ""


def _pair_problem(right: _Candidate, left: _Candidate, mid_x: float, params: AnalysisParameters) -> str:
    d = left.centre - right.centre
    sep = float(np.linalg.norm(d))
    if not params.head_separation_min_mm <= sep <= params.head_separation_max_mm:
        return f"head centres {sep:.0f} mm apart, outside {params.head_separation_min_mm:.0f}-{params.head_separation_max_mm:.0f} mm"
    tilt_cc = float(np.degrees(np.arctan2(abs(d[2]), abs(d[0]))))
    tilt_ap = float(np.degrees(np.arctan2(abs(d[1]), abs(d[0]))))
    if max(tilt_cc, tilt_ap) > params.head_pair_tilt_max_deg:
        return (f"the line between the head centres leans {max(tilt_cc, tilt_ap):.0f} degrees "
                f"(more than {params.head_pair_tilt_max_deg:.0f})")
    mid = (left.centre[0] + right.centre[0]) / 2
    if abs(mid - mid_x) > params.midline_tolerance_mm:
        return f"head pair is {abs(mid - mid_x):.0f} mm off the body midline"
    return ""


def _find_shaft(work: WorkingImages, grads: list[_Gradient], head: Vec, lateral: float) -> tuple[Vec, Vec] | None:
    """Femoral shaft axis below the head: (point, unit direction pointing cranially) or None."""
    sp = work.spacing
    g = grads[0]
    radii = np.arange(9.0, 18.01, 1.0) / sp
    centres = []
    for dz in range(50, 131, 10):
        z_mm = head[2] - dz
        zi = int(round(work.to_index(np.array([head[0], head[1], z_mm]))[0]))
        if not 0 <= zi < g.gz.shape[0]:
            continue
        gy, gx = g.gy[zi], g.gx[zi]
        mag = np.hypot(gy, gx)
        x_mm = work.origin[0] + sp * np.arange(gy.shape[1])
        y_mm = work.origin[1] + sp * np.arange(gy.shape[0])
        off = lateral * (x_mm - head[0])
        win = ((off >= 0) & (off <= 90))[None, :] & (np.abs(y_mm - head[1]) <= 50)[:, None]
        edges = win & (mag > g.edge_threshold)
        if edges.sum() < 20:
            continue
        yy, xx = (a.astype(np.float64) for a in np.nonzero(edges))
        m = mag[edges]
        uy, ux = gy[edges] / m, gx[edges] / m
        acc = np.zeros(gy.shape, dtype=np.float64)
        for r in radii:
            for sign in (1.0, -1.0):
                cy = np.rint(yy + sign * r * uy).astype(np.int64)
                cx = np.rint(xx + sign * r * ux).astype(np.int64)
                ok = (cy >= 0) & (cy < acc.shape[0]) & (cx >= 0) & (cx < acc.shape[1])
                np.add.at(acc, (cy[ok], cx[ok]), 1.0)
        acc = ndimage.gaussian_filter(acc, 1.0) * win
        py, px = np.unravel_index(int(np.argmax(acc)), acc.shape)
        if acc[py, px] < 2 * np.pi * radii.mean() * 0.5:
            continue
        centres.append(np.array([x_mm[px], y_mm[py], z_mm]))
    if len(centres) < 3:
        return None
    pts = np.asarray(centres)
    # robust line: drop points far from the median x/y, then a least-squares line fit
    med = np.median(pts[:, :2], axis=0)
    keep = np.linalg.norm(pts[:, :2] - med, axis=1) <= 15
    pts = pts[keep]
    if len(pts) < 3:
        return None
    mean = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - mean)
    direction = vt[0] if vt[0][2] > 0 else -vt[0]
    if direction[2] < np.cos(np.radians(30)):  # a shaft runs within 30 degrees of cranio-caudal
        return None
    return mean, direction


def neck_axis(work: WorkingImages, grads: list[_Gradient], head: Vec, radius: float,
              shaft: tuple[Vec, Vec] | None, lateral: float, params: AnalysisParameters) -> tuple[Vec, float]:
    """Unit vector from the head centre along the neck to the neck base, and its length: measured
    (``measured_neck_axis``, the base where it passes the shaft) where the images show the neck's
    opening, else the average anatomy (``average_neck_axis``)."""
    axis, length = average_neck_axis(head, radius, shaft, lateral, params)
    seen = measured_neck_axis(work, grads, head, radius, axis)
    if seen is None:
        return axis, length
    if shaft is not None:
        base = neck_base_distance(head, seen, shaft)
        if radius + MIN_NECK_MM <= base <= radius + MAX_NECK_MM:
            length = base
    return seen, length


def average_neck_axis(head: Vec, radius: float, shaft: tuple[Vec, Vec] | None, lateral: float,
                      params: AnalysisParameters) -> tuple[Vec, float]:
    """The neck axis and length of average anatomy: to the shaft axis at the average neck-shaft
    angle, or without a shaft lateral and down at that angle with the average neck length."""
    if shaft is None:
        tilt = np.radians(180.0 - params.neck_shaft_angle_deg)
        return np.array([lateral * np.sin(tilt), 0.0, -np.cos(tilt)]), radius + params.neck_length_mm + 6.0
    point, up = shaft
    foot = point + ((head - point) @ up) * up
    dist = float(np.linalg.norm(head - foot))
    drop = dist / np.tan(np.radians(180.0 - params.neck_shaft_angle_deg))
    target = foot - drop * up
    axis = target - head
    length = float(np.linalg.norm(axis))
    return axis / length, length


def measured_neck_axis(work: WorkingImages, grads: list[_Gradient], centre: Vec, radius: float,
                       prior: Vec) -> Vec | None:
    """The direction in which the head's outline opens into the neck, or None when no opening is seen.

    Rays from the head centre cross the dark cortex at the head's surface everywhere except into
    the neck, where the marrow runs on. A ray is open when its strongest edge near the surface (on
    the first image: T1, else the fluid-sensitive series) is weaker than ``NECK_OPEN_FRACTION`` of
    the median ray on the neck's side of the head; the axis is the mean open direction within
    ``NECK_SEARCH_DEG`` of the current estimate, recentred until it settles. ``prior`` (from the
    shaft and the average neck-shaft angle) only says where to look.
    """
    dirs = _fibonacci_sphere(NECK_RAYS)
    dirs = dirs[(dirs @ prior > 0) & _imaged_rays(work, centre, dirs, radius + 6.0)]
    if len(dirs) < MIN_IMAGED_RAYS:
        return None
    radii = np.arange(radius - 4.0, radius + 6.01, 0.5)
    strength = _radial_derivative(work, grads[:1], centre, dirs, radii).max(axis=1)
    open_rays = strength < NECK_OPEN_FRACTION * float(np.median(strength))
    cos_cone = np.cos(np.radians(NECK_SEARCH_DEG))
    axis = prior
    for _ in range(NECK_ITERATIONS):
        chosen = open_rays & (dirs @ axis >= cos_cone)
        if chosen.sum() < MIN_NECK_RAYS:
            return None
        mean = dirs[chosen].mean(axis=0)
        axis = mean / np.linalg.norm(mean)
    if float(axis @ prior) < cos_cone:
        return None
    out: Vec = axis
    return out


def neck_base_distance(head: Vec, axis: Vec, shaft: tuple[Vec, Vec]) -> float:
    """Distance from the head centre along ``axis`` to the point nearest the shaft axis (the neck base)."""
    point, up = shaft
    w = head - point
    b = float(axis @ up)
    denom = 1.0 - b * b
    if denom < 1e-6:  # parallel: no defined crossing
        return float("nan")
    return float((b * (w @ up) - (w @ axis)) / denom)


def _neck_radius(work: WorkingImages, grads: list[_Gradient], head: Vec, radius: float, axis: Vec) -> float | None:
    helper = np.array([0.0, 1.0, 0.0]) if abs(axis[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    dirs = np.cos(angles)[:, None] * e1[None, :] + np.sin(angles)[:, None] * e2[None, :]
    rho = np.arange(6.0, 24.01, 0.5)
    found = []
    for t in (radius + 4, radius + 8, radius + 12):
        prof = _radial_derivative(work, grads, head + t * axis, dirs, rho)
        best = prof.argmax(axis=1)
        strong = prof[np.arange(len(dirs)), best] >= 1.0
        found.extend(rho[best][strong].tolist())
    if len(found) < 12:
        return None
    return float(np.median(found))


def locate_femurs(work: WorkingImages, params: AnalysisParameters,
                  skip: dict[Side, str] | None = None) -> Localization:
    """Find both proximal femurs; a side that fails the gates gets None and a reason.

    ``skip``: sides not to look for (e.g. a metal implant), with the reason; the other side is then
    found on its own, without the pair gates."""
    skip = skip or {}
    sp = work.spacing
    body = work.body
    if not body.any():
        reason = "no body found in the image"
        return Localization(femurs={"right": None, "left": None}, reasons={"right": reason, "left": reason},
                            body_centre_x_mm=float("nan"))
    xs = work.origin[0] + sp * np.arange(body.shape[2])
    mid_x, midline_note = midline(work)
    grads = []
    if work.t1 is not None:
        grads.append(_gradient(work.t1, body, sp, signed=True))
    grads.append(_gradient(work.fluid, body, sp, signed=False))
    radii_vox = np.arange(params.head_radius_min_mm, params.head_radius_max_mm + 0.1, 3.0) / sp
    # a head's outline lies 45-135 mm from the midline (gates plus head radius): vote only from there
    off = np.abs(xs - mid_x)
    near_heads = (off >= params.head_separation_min_mm / 2 - params.midline_tolerance_mm - params.head_radius_max_mm)
    near_heads &= off <= params.head_separation_max_mm / 2 + params.midline_tolerance_mm + params.head_radius_max_mm
    acc = _vote(grads, body & near_heads[None, None, :], radii_vox)

    cands: dict[Side, list[_Candidate]] = {
        side: [] if side in skip else _candidates(work, grads, acc, body, mid_x, lateral, params)
        for side, lateral in SIDES
    }
    # without a T1 the head is outlined only where cartilage or fluid borders it, not against the acetabulum
    min_coherence = params.head_edge_coherence_min if work.t1 is not None else params.head_edge_coherence_min_no_t1
    good: dict[Side, list[_Candidate]] = {s: [c for c in cs if not _plausible(c, params, min_coherence)]
                                          for s, cs in cands.items()}
    reasons: dict[Side, str] = {}
    chosen: dict[Side, _Candidate | None] = {"right": None, "left": None}
    pairs = [
        (r.votes * r.coherence + l_.votes * l_.coherence, r, l_)
        for r in good["right"] for l_ in good["left"] if not _pair_problem(r, l_, mid_x, params)
    ]
    notes: list[str] = [midline_note] if midline_note else []
    if pairs:
        _, chosen["right"], chosen["left"] = max(pairs, key=lambda p: p[0])
    else:
        for side, _ in SIDES:
            if not cands[side]:
                reasons[side] = f"no femoral-head candidate found on the {side} side"
            elif not good[side]:
                reasons[side] = _plausible(cands[side][0], params, min_coherence)
        if good["right"] and good["left"]:
            problem = _pair_problem(good["right"][0], good["left"][0], mid_x, params)
            reasons["right"] = reasons["left"] = f"implausible femoral-head pair: {problem}"
        else:
            for side, _ in SIDES:
                if good[side]:  # the other side failed: keep this one alone (e.g. one hip out of view)
                    chosen[side] = good[side][0]
                    notes.append(f"{side} head found without a partner; symmetry gate not applied")

    femurs: dict[Side, FemurGeometry | None] = {}
    for side, lateral in SIDES:
        cand = chosen[side]
        if cand is None:
            femurs[side] = None
            continue
        shaft = _find_shaft(work, grads, cand.centre, lateral)
        axis, neck_len = neck_axis(work, grads, cand.centre, cand.radius, shaft, lateral, params)
        neck_r = _neck_radius(work, grads, cand.centre, cand.radius, axis)
        side_notes = []
        if shaft is None:
            side_notes.append("femoral shaft not found; average neck-shaft geometry used")
        if neck_r is None or not 0.45 * cand.radius <= neck_r <= 0.85 * cand.radius:
            neck_r = NECK_TO_HEAD_RADIUS * cand.radius  # outline unclear (e.g. oedema): average proportion
        femurs[side] = FemurGeometry(
            side=side,
            centre=(float(cand.centre[0]), float(cand.centre[1]), float(cand.centre[2])),
            radius_mm=float(cand.radius),
            neck_axis=(float(axis[0]), float(axis[1]), float(axis[2])),
            neck_radius_mm=float(neck_r),
            neck_length_mm=neck_len,
            edge_coherence=float(cand.coherence),
            shaft_found=shaft is not None,
            shaft_point=None if shaft is None else (float(shaft[0][0]), float(shaft[0][1]), float(shaft[0][2])),
            shaft_direction=None if shaft is None else (float(shaft[1][0]), float(shaft[1][1]), float(shaft[1][2])),
            notes=tuple(side_notes),
        )
    imaged: dict[Side, bool] = {}
    for side, lateral in SIDES:
        imaged[side] = femurs.get(side) is not None or _in_view(xs, mid_x, lateral, params)
        if side in skip:
            reasons[side] = skip[side]
        elif not imaged[side]:
            reasons[side] = (f"not imaged: the {side} hip lies outside the field of view (x {xs[0]:.0f} to "
                             f"{xs[-1]:.0f} mm, patient midline at x {mid_x:.0f} mm)")
        elif femurs.get(side) is None and side not in reasons:
            reasons[side] = f"no plausible femoral head on the {side} side"
    return Localization(femurs=femurs, reasons=reasons, body_centre_x_mm=mid_x, notes=tuple(notes), imaged=imaged)


def midline(work: WorkingImages) -> tuple[float, str]:
    """The patient's midline (LPS x) and, when it is not seen, a note saying what was assumed.

    The body's centre when the field of view holds the whole width of the pelvis; otherwise (a
    one-hip protocol, or a body wider than a small field of view) the scanner's isocentre, x = 0:
    patients lie centred on the table, and a head lies 60-130 mm from it.
    """
    body = work.body
    xs = work.origin[0] + work.spacing * np.arange(body.shape[2])
    columns: npt.NDArray[np.bool_] = np.asarray(body.any(axis=(0, 1)), dtype=bool)
    width = float(xs[-1] - xs[0])
    touches = bool(columns[:EDGE_COLUMNS].any()) or bool(columns[-EDGE_COLUMNS:].any())
    if width >= FULL_PELVIS_FOV_MM or not touches:
        return float((body.sum(axis=(0, 1)) * xs).sum() / body.sum()), ""
    return 0.0, (f"the field of view ({width:.0f} mm wide) does not show the whole pelvis: the patient's midline "
                 "is taken at the scanner's isocentre (x = 0) to tell the sides apart")


def _in_view(xs: npt.NDArray[np.float64], mid_x: float, lateral: float, params: AnalysisParameters) -> bool:
    """Whether the field of view reaches where this side's femoral head can lie."""
    near = mid_x + lateral * (params.head_separation_min_mm / 2 - params.midline_tolerance_mm)
    far = mid_x + lateral * (params.head_separation_max_mm / 2 + params.midline_tolerance_mm)
    lo, hi = min(near, far), max(near, far)
    return bool(xs[-1] >= lo + params.head_radius_min_mm and xs[0] <= hi - params.head_radius_min_mm)
