"""Render a few slices of each series of a study folder to one PNG (as a viewer would show them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from workers.phantom.study import dicom_dir, truth_dir


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


def render_preview(out_dir: Path, png_path: Path, slices_per_series: int = 4,
                   tile_px: int = 320) -> Path:
    """Write a montage of a phantom (``generate_study``'s ``out_dir``): one row per series,
    ``slices_per_series`` evenly spaced central slices."""
    rows = []
    for folder in sorted(p for p in dicom_dir(out_dir).iterdir() if p.is_dir()):
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


def render_hip_closeup(out_dir: Path, png_path: Path, side: str, half_mm: float = 48.0,
                       tile_px: int = 360) -> Path:
    """Write T1 and fluid-sensitive crops around one femoral head (slice through its centre) of a phantom."""
    from workers.phantom.truth import GroundTruth

    truth = GroundTruth.load(truth_dir(out_dir) / "truth.json")
    centre = np.asarray(truth.sides[side].head_centre_lps_mm)
    lesion = truth.sides[side].avn_lesion
    # the slice through the AVN lesion when there is one, else through the head centre
    through = (centre + 0.7 * truth.sides[side].head_radius_mm * np.asarray(lesion["axis_from_head_centre"])
               if lesion else centre)
    tiles = []
    for uid in (truth.t1_series_uid, truth.fluid_sensitive_series_uid):
        s = next(x for x in truth.series if x.series_instance_uid == uid)
        g = s.geometry
        stack, desc = _series_stack(dicom_dir(out_dir) / s.folder)
        d = centre - np.asarray(g["origin_lps_mm"])
        k = int(round((through - np.asarray(g["origin_lps_mm"])) @ np.asarray(g["normal"])
                      / g["slice_spacing_mm"]))
        r = d @ np.asarray(g["col_dir"]) / g["pixel_spacing_mm"][0]
        c = d @ np.asarray(g["row_dir"]) / g["pixel_spacing_mm"][1]
        hr, hc = half_mm / g["pixel_spacing_mm"][0], half_mm / g["pixel_spacing_mm"][1]
        img = stack[min(max(k, 0), stack.shape[0] - 1)]
        crop = img[int(r - hr):int(r + hr), int(c - hc):int(c + hc)]
        lo, hi = np.percentile(img, [0.5, 99.7])
        crop = np.clip((crop - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
        tile = Image.fromarray(crop).resize((tile_px, tile_px), Image.Resampling.BICUBIC)
        ImageDraw.Draw(tile).text((4, 4), f"{desc} {side} hip", fill=255)
        tiles.append(np.asarray(tile))
    png_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(tiles, axis=1)).save(png_path)
    return png_path
