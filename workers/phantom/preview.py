"""Render a few slices of each series of a study folder to one PNG (as a viewer would show them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image, ImageDraw


def _series_stack(folder: Path) -> tuple[NDArray[np.float32], str]:
    """Slices of one series folder sorted along the slice normal, rescaled."""
    datasets = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    first = datasets[0]
    if int(getattr(first, "NumberOfFrames", 1)) > 1:
        frames = first.pixel_array.astype(np.float32)
        groups = first.PerFrameFunctionalGroupsSequence
        iop = np.asarray(first.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                         .ImageOrientationPatient, float)
        pos = [np.asarray(g.PlanePositionSequence[0].ImagePositionPatient, float) for g in groups]
        normal = np.cross(iop[:3], iop[3:])
        order = np.argsort([p @ normal for p in pos])
        pvt = first.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
        frames = frames * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
        return frames[order], str(first.SeriesDescription)
    iop = np.asarray(first.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda d: float(np.asarray(d.ImagePositionPatient, float) @ normal))
    stack = np.stack([d.pixel_array.astype(np.float32) * float(getattr(d, "RescaleSlope", 1.0))
                      + float(getattr(d, "RescaleIntercept", 0.0)) for d in datasets])
    return stack, str(first.SeriesDescription)


def render_preview(study_dir: Path, png_path: Path, slices_per_series: int = 4,
                   tile_px: int = 320) -> Path:
    """Write a montage: one row per series, ``slices_per_series`` evenly spaced central slices."""
    rows = []
    for folder in sorted(p for p in Path(study_dir).iterdir() if p.is_dir() and p.name != "truth"):
        stack, desc = _series_stack(folder)
        n = stack.shape[0]
        picks = np.linspace(n * 0.25, n * 0.75, slices_per_series).round().astype(int)
        lo, hi = np.percentile(stack, [0.5, 99.7])
        tiles = []
        for k in picks:
            img = np.clip((stack[min(k, n - 1)] - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255)
            tile = Image.fromarray(img.astype(np.uint8)).resize((tile_px, tile_px), Image.Resampling.BICUBIC)
            ImageDraw.Draw(tile).text((4, 4), f"{desc} {k + 1}/{n}", fill=255)
            tiles.append(np.asarray(tile))
        rows.append(np.concatenate(tiles, axis=1))
    png_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(png_path)
    return png_path
