"""Slice geometry of a series in LPS and sampling of the model into its pixels."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from workers.phantom.raster import Canvas
from workers.phantom.sdf import F32, Vec

#: Maps LPS point arrays (x, y, z) to other LPS points (e.g. where a moved patient's tissue was).
PointMap = Callable[[F32, F32, F32], tuple[F32, F32, F32]]


@dataclass(frozen=True)
class SeriesGeometry:
    """A stack of parallel slices. ``origin`` is the centre of pixel (row 0, col 0) of slice 0;
    slices advance along ``normal = row_dir x col_dir`` by ``spacing`` mm."""

    row_dir: Vec  # direction of increasing column index (DICOM IOP first triplet)
    col_dir: Vec  # direction of increasing row index (IOP second triplet)
    origin: Vec
    rows: int
    cols: int
    row_spacing: float  # mm between rows (PixelSpacing[0])
    col_spacing: float  # mm between columns (PixelSpacing[1])
    n_slices: int
    spacing: float
    thickness: float

    @property
    def normal(self) -> NDArray[np.float64]:
        return np.cross(np.asarray(self.row_dir), np.asarray(self.col_dir))

    def slice_origin(self, k: int) -> NDArray[np.float64]:
        return np.asarray(self.origin) + k * self.spacing * self.normal

    def index_to_lps(self, k: float, row: float, col: float) -> NDArray[np.float64]:
        return (np.asarray(self.origin) + k * self.spacing * self.normal
                + row * self.row_spacing * np.asarray(self.col_dir)
                + col * self.col_spacing * np.asarray(self.row_dir))

    def contains(self, x: F32, y: F32, z: F32) -> NDArray[np.bool_]:
        """Which LPS points lie inside the imaged volume: the field of view and the slab from the
        first slice's to the last slice's outer face (gaps between slices count as inside)."""
        o = np.asarray(self.origin)
        d = (np.asarray(x) - o[0], np.asarray(y) - o[1], np.asarray(z) - o[2])

        def along(v: Vec | NDArray[np.float64], step: float) -> NDArray[np.float64]:
            return np.asarray((d[0] * v[0] + d[1] * v[1] + d[2] * v[2]) / step)

        k = along(self.normal, self.spacing)
        r, c = along(self.col_dir, self.row_spacing), along(self.row_dir, self.col_spacing)
        half = self.thickness / (2.0 * self.spacing)
        return np.asarray((k >= -half) & (k <= self.n_slices - 1 + half) & (r >= -0.5)
                          & (r <= self.rows - 0.5) & (c >= -0.5) & (c <= self.cols - 0.5))

    def lps_to_index(self, p: Vec) -> NDArray[np.float64]:
        """(k, row, col) of an LPS point (fractional)."""
        d = np.asarray(p) - np.asarray(self.origin)
        return np.array([d @ self.normal / self.spacing, d @ np.asarray(self.col_dir) / self.row_spacing,
                         d @ np.asarray(self.row_dir) / self.col_spacing])


def plan(plane: str, centre: Vec, fov_mm: tuple[float, float], matrix: tuple[int, int],
         n_slices: int, thickness: float, spacing: float, *, tilt_deg: float = 0.0,
         feet_first: bool = False) -> SeriesGeometry:
    """Place a coronal or axial stack centred on ``centre``.

    ``fov_mm`` and ``matrix`` are (rows, cols). Head-first coronal images have the patient's
    right on the image left and the head at the top; feet-first ones are turned 180 degrees
    in plane, as scanners reconstruct them in gantry coordinates. ``tilt_deg`` turns the
    plane about the patient's vertical axis (oblique coronal).
    """
    if plane == "coronal":
        row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])
    elif plane == "axial":
        row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    elif plane == "sagittal":
        row, col = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    else:
        raise ValueError(f"plane must be 'coronal', 'axial' or 'sagittal', not {plane!r}")
    if feet_first:
        if plane in ("coronal", "axial"):
            row = -row
        if plane in ("coronal", "sagittal"):
            col = -col
    if tilt_deg:
        a = math.radians(tilt_deg)
        rot = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                        [0.0, 0.0, 1.0]])
        row, col = rot @ row, rot @ col
    rows, cols = matrix
    rs, cs = fov_mm[0] / rows, fov_mm[1] / cols
    normal = np.cross(row, col)
    origin = (np.asarray(centre) - (cols - 1) / 2.0 * cs * row - (rows - 1) / 2.0 * rs * col
              - (n_slices - 1) / 2.0 * spacing * normal)
    return SeriesGeometry(row_dir=_vec(row), col_dir=_vec(col), origin=_vec(origin), rows=rows,
                          cols=cols, row_spacing=rs, col_spacing=cs, n_slices=n_slices,
                          spacing=spacing, thickness=thickness)


def _vec(v: NDArray[np.float64]) -> Vec:
    return (round(float(v[0]), 6) + 0.0, round(float(v[1]), 6) + 0.0, round(float(v[2]), 6) + 0.0)


def slice_points(geo: SeriesGeometry, k: int, offset_mm: float, sub: tuple[float, float] = (0.0, 0.0)
                 ) -> tuple[F32, F32, F32]:
    """LPS coordinates (rows, cols) of the pixel centres of slice k, shifted along the normal."""
    o = geo.slice_origin(k) + offset_mm * geo.normal
    r = (np.arange(geo.rows, dtype=np.float32) + sub[0]) * geo.row_spacing
    c = (np.arange(geo.cols, dtype=np.float32) + sub[1]) * geo.col_spacing
    rd, cd = np.asarray(geo.col_dir, np.float32), np.asarray(geo.row_dir, np.float32)
    pts = [o[i] + r[:, None] * rd[i] + c[None, :] * cd[i] for i in range(3)]
    return (np.asarray(pts[0], np.float32), np.asarray(pts[1], np.float32),
            np.asarray(pts[2], np.float32))


def subsample_offsets(geo: SeriesGeometry, model_h: float) -> tuple[list[float], list[tuple[float, float]]]:
    """Offsets along the normal (slice profile) and in plane (pixel area) for partial volume."""
    n_z = max(3, int(math.ceil(geo.thickness / model_h)))
    through = [geo.thickness * ((i + 0.5) / n_z - 0.5) for i in range(n_z)]
    n_p = 2 if min(geo.row_spacing, geo.col_spacing) > 2.0 * model_h else 1
    inplane = [((i + 0.5) / n_p - 0.5, (j + 0.5) / n_p - 0.5) for i in range(n_p) for j in range(n_p)]
    return through, inplane


def sample(volume: F32, canvas: Canvas, x: F32, y: F32, z: F32) -> F32:
    """Trilinear sample of a model-grid volume at LPS points (0 outside)."""
    coords = np.stack([(x - canvas.origin[0]) / canvas.h, (y - canvas.origin[1]) / canvas.h,
                       (z - canvas.origin[2]) / canvas.h]).reshape(3, -1)
    out = ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0, prefilter=False)
    return np.asarray(out.reshape(x.shape), np.float32)


def render_slices(volume: F32, canvas: Canvas, geo: SeriesGeometry, moved: PointMap | None = None) -> F32:
    """Noise-free image stack (slices, rows, cols) with slice-profile and pixel partial volume.

    ``moved``: the patient moved; maps each scanner point to where that tissue was in the model.
    """
    through, inplane = subsample_offsets(geo, canvas.h)
    out = np.zeros((geo.n_slices, geo.rows, geo.cols), np.float32)
    for k in range(geo.n_slices):
        acc = np.zeros((geo.rows, geo.cols), np.float32)
        for off in through:
            for sub in inplane:
                points = slice_points(geo, k, off, sub)
                acc += sample(volume, canvas, *(moved(*points) if moved is not None else points))
        out[k] = acc / (len(through) * len(inplane))
    return out
