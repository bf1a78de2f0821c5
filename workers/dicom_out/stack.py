"""The analysis maps resampled onto each source frame, computed once per build."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray

from workers.analysis.maps import AnalysisMaps
from workers.dicom_out.geometry import (
    GeometryError,
    SourceFrame,
    image_geometry,
    sample_on_frame,
    source_frames,
    volume_index_grid,
)
from workers.io.types import LoadedSeries


@dataclass(frozen=True)
class FrameMaps:
    """Source image and analysis maps of one source frame, on that frame's pixel grid."""

    frame: SourceFrame
    gray: NDArray[np.float32]
    score: NDArray[np.float32]
    oedema: NDArray[np.uint8]  # 1 = right, 2 = left
    regions: NDArray[np.uint8]  # REGION_LABELS
    effusion: NDArray[np.uint8]  # 1 = right, 2 = left


def bounding_box(mask: NDArray[np.bool_]) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the True pixels of a frame's ``mask``, or None when there are none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    ga, gb = image_geometry(a), image_geometry(b)
    return (ga[3] == gb[3] and bool(np.allclose(ga[0], gb[0], atol=1e-3))
            and bool(np.allclose(ga[1], gb[1], atol=1e-4)) and bool(np.allclose(ga[2], gb[2], atol=1e-4)))


def keep_reported_oedema(frames: list[FrameMaps], reported: set[int]) -> list[FrameMaps]:
    """Frames whose oedema mask and score keep only the sides in ``reported`` (1 right, 2 left).

    A side the result does not report (volume below the reporting threshold, withheld,
    not localised) must not look oedematous in the SEG or the overlays.
    """
    out = []
    for fm in frames:
        keep = np.isin(fm.oedema, sorted(reported))
        out.append(replace(fm, oedema=np.where(keep, fm.oedema, 0).astype(np.uint8),
                           score=np.where(keep, fm.score, 0).astype(np.float32)))
    return out


def sample_maps(fluid: LoadedSeries, maps: AnalysisMaps) -> list[FrameMaps]:
    """Every slice of ``fluid`` with its maps, on the source pixel grid, in z order."""
    image = fluid.image
    for name in ("score", "oedema", "regions", "effusion"):
        if not _same_grid(image, getattr(maps, name)):
            raise GeometryError(f"analysis map {name!r} is not on the fluid-sensitive series' grid")
    gray = sitk.GetArrayViewFromImage(image)
    score = sitk.GetArrayViewFromImage(maps.score)
    oedema = sitk.GetArrayViewFromImage(maps.oedema)
    regions = sitk.GetArrayViewFromImage(maps.regions)
    effusion = sitk.GetArrayViewFromImage(maps.effusion)
    out = []
    for frame in source_frames(fluid):
        grid = volume_index_grid(image, frame)
        out.append(FrameMaps(
            frame=frame,
            gray=sample_on_frame(gray, image, frame, grid).astype(np.float32),
            score=sample_on_frame(score, image, frame, grid).astype(np.float32),
            oedema=sample_on_frame(oedema, image, frame, grid).astype(np.uint8),
            regions=sample_on_frame(regions, image, frame, grid).astype(np.uint8),
            effusion=sample_on_frame(effusion, image, frame, grid).astype(np.uint8),
        ))
    return out
