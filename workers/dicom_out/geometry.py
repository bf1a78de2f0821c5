"""Where each voxel of the analysis grid lies on the source images.

The analysis maps live on the fluid-sensitive volume (SimpleITK, LPS). SEG frames,
SR polygons and SC overlays must be drawn on the *source* pixel grids, which the
loader may have reordered. Everything here goes through patient coordinates, so the
result is right whatever the loader did with axes, flips or frame order, and the
orientation letters come from the direction cosines, never from assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from workers.io.types import LoadedSeries, SliceRef


class GeometryError(ValueError):
    """The source headers do not describe the analysed volume's slices."""


@dataclass(frozen=True)
class SourceFrame:
    """One source image (or one frame of a multi-frame image) of the analysed volume."""

    z: int
    ref: SliceRef
    dataset: Dataset
    position: NDArray[np.float64]  # ImagePositionPatient, centre of first pixel, LPS mm
    row_dir: NDArray[np.float64]  # direction of increasing column index
    col_dir: NDArray[np.float64]  # direction of increasing row index
    spacing: tuple[float, float]  # (between rows, between columns) mm
    rows: int
    columns: int


def _first(seq_owner: Dataset, keyword: str) -> Dataset | None:
    seq = seq_owner.get(keyword)
    return seq[0] if seq else None


def _frame_attr(ds: Dataset, frame: int, seq_kw: str) -> Dataset:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and len(per_frame) >= frame:
        item = _first(per_frame[frame - 1], seq_kw)
        if item is not None:
            return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        item = _first(shared[0], seq_kw)
        if item is not None:
            return item
    raise GeometryError(f"frame {frame} of {ds.SOPInstanceUID} has no {seq_kw}")


def source_frames(series: LoadedSeries) -> list[SourceFrame]:
    """The source frame of every slice z of ``series``, in z order."""
    by_uid = {str(ds.SOPInstanceUID): ds for ds in series.datasets}
    frames = []
    for z, ref in enumerate(series.slices):
        ds = by_uid.get(ref.sop_instance_uid)
        if ds is None:
            raise GeometryError(f"slice {z}: no header for instance {ref.sop_instance_uid}")
        if ref.frame_number is None:
            ipp, iop, spacing = ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
        else:
            ipp = _frame_attr(ds, ref.frame_number, "PlanePositionSequence").ImagePositionPatient
            iop = _frame_attr(ds, ref.frame_number, "PlaneOrientationSequence").ImageOrientationPatient
            spacing = _frame_attr(ds, ref.frame_number, "PixelMeasuresSequence").PixelSpacing
        orient = np.asarray([float(v) for v in iop], dtype=np.float64)
        frames.append(SourceFrame(
            z=z, ref=ref, dataset=ds,
            position=np.asarray([float(v) for v in ipp], dtype=np.float64),
            row_dir=orient[:3], col_dir=orient[3:],
            spacing=(float(spacing[0]), float(spacing[1])),
            rows=int(ds.Rows), columns=int(ds.Columns),
        ))
    return frames


def image_geometry(image: sitk.Image) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                               NDArray[np.float64], tuple[int, int, int]]:
    """(origin, spacing, 3x3 direction, size) of a 3-D SimpleITK image."""
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)  # type: ignore[no-untyped-call]
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)  # type: ignore[no-untyped-call]
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)  # type: ignore[no-untyped-call]
    sx, sy, sz = (int(v) for v in image.GetSize())  # type: ignore[no-untyped-call]
    return origin, spacing, direction, (sx, sy, sz)


def volume_index_grid(image: sitk.Image, frame: SourceFrame) -> NDArray[np.int64] | None:
    """For each source pixel (row, col) of ``frame``, the nearest voxel index (x, y, z) of ``image``.

    Shape (rows, columns, 3); None when the frame is slice ``frame.z`` of the volume pixel for pixel
    (the usual case: the loader built the volume from these frames), so no grid is needed. Raises
    GeometryError when the frame is not a slice of ``image``.
    """
    origin, spacing, direction, size = image_geometry(image)
    to_index = np.linalg.inv(direction @ np.diag(spacing))
    start = to_index @ (frame.position - origin)  # continuous index of pixel (0, 0); the map is affine
    col_step = to_index @ (frame.spacing[1] * frame.row_dir)
    row_step = to_index @ (frame.spacing[0] * frame.col_dir)
    corners = [start + r * row_step + c * col_step for r in (0, frame.rows - 1) for c in (0, frame.columns - 1)]
    if max(abs(corner[2] - frame.z) for corner in corners) > 0.5:
        raise GeometryError(f"source frame of slice {frame.z} does not lie in that slice of the volume")
    # every pixel rounds to its own (col, row) when the drift over the whole frame stays well below half a voxel
    drift = (np.abs(start - (0.0, 0.0, frame.z)).max() + (frame.columns - 1) * np.abs(col_step - (1.0, 0.0, 0.0)).max()
             + (frame.rows - 1) * np.abs(row_step - (0.0, 1.0, 0.0)).max())
    if drift < 0.25 and (frame.columns, frame.rows) == size[:2]:
        return None
    rows, cols = np.mgrid[0:frame.rows, 0:frame.columns].astype(np.float64)
    cont = start + cols[..., None] * col_step + rows[..., None] * row_step
    return np.asarray(np.rint(cont), dtype=np.int64)


def sample_on_frame(array_zyx: NDArray[np.generic], image: sitk.Image, frame: SourceFrame,
                    index_grid: NDArray[np.int64] | None) -> NDArray[np.generic]:
    """Values of a volume-grid array (numpy z, y, x order) on the pixel grid of ``frame`` (0 outside).

    ``index_grid``: ``volume_index_grid(image, frame)`` (None: the frame is slice z itself).
    """
    if index_grid is None:
        return np.array(array_zyx[frame.z])
    x, y = index_grid[..., 0], index_grid[..., 1]
    size_x, size_y = image_geometry(image)[3][:2]
    inside = (x >= 0) & (x < size_x) & (y >= 0) & (y < size_y)
    out = np.zeros((frame.rows, frame.columns), dtype=array_zyx.dtype)
    out[inside] = array_zyx[frame.z, y[inside], x[inside]]
    return out


_DICOM_LETTERS = (("R", "L"), ("A", "P"), ("F", "H"))  # negative, positive along LPS x, y, z
_DISPLAY_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def _letters(vector: NDArray[np.float64], table: tuple[tuple[str, str], ...]) -> str:
    order = np.argsort(-np.abs(vector))
    out = ""
    for axis in order:
        if abs(vector[axis]) < 0.25:
            break
        out += table[axis][1] if vector[axis] > 0 else table[axis][0]
    return out


def patient_orientation(frame: SourceFrame) -> tuple[str, str]:
    """DICOM PatientOrientation (row direction, column direction), e.g. ("L", "F")."""
    return _letters(frame.row_dir, _DICOM_LETTERS)[:1], _letters(frame.col_dir, _DICOM_LETTERS)[:1]


def edge_letters(frame: SourceFrame) -> dict[str, str]:
    """Letters for the image edges (left, right, top, bottom) as a radiologist reads them (R/L, A/P, S/I)."""
    return {
        "right": _letters(frame.row_dir, _DISPLAY_LETTERS),
        "left": _letters(-frame.row_dir, _DISPLAY_LETTERS),
        "bottom": _letters(frame.col_dir, _DISPLAY_LETTERS),
        "top": _letters(-frame.col_dir, _DISPLAY_LETTERS),
    }
