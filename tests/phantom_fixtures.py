"""Session-wide cache of small phantom studies for the phantom tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest

from workers.phantom import GroundTruth, dicom_dir, generate_study

StudyFactory = Callable[..., tuple[Path, GroundTruth]]


@pytest.fixture(scope="session")
def phantom_study(tmp_path_factory: pytest.TempPathFactory) -> StudyFactory:
    """``phantom_study(case, *variants, seed=0)`` -> (the study's DICOM folder, truth); generated once per
    session. The truth files are beside that folder (``truth_dir(study.parent)``)."""
    cache: dict[tuple[str, tuple[str, ...], int], tuple[Path, GroundTruth]] = {}

    def make(case: str, *variants: str, seed: int = 0) -> tuple[Path, GroundTruth]:
        key = (case, tuple(sorted(variants)), seed)
        if key not in cache:
            name = "-".join([case, *key[1], str(seed)])
            out = tmp_path_factory.mktemp(name)
            truth = generate_study(out, case, seed, variants=variants, small=True)
            cache[key] = (dicom_dir(out), truth)
        return cache[key]

    return make


def dciodvfy_errors(path: Path) -> list[str]:
    """The "Error" lines dciodvfy prints for one file."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy (dicom3tools) is not installed")
    proc = subprocess.run([exe, "-filename", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "Error" in line]


def series_files(study_dir: Path, folder: str) -> list[Path]:
    return sorted((study_dir / folder).glob("*.dcm"))


def stack_from_files(files: Sequence[Path]) -> tuple[np.ndarray, list[pydicom.FileDataset]]:
    """Pixel stack (rescaled) of single- or multi-frame files, in file order."""
    datasets = [pydicom.dcmread(f) for f in files]
    arrays = []
    for ds in datasets:
        arr = ds.pixel_array.astype(np.float32)
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        arrays.append(arr * slope + intercept)
    stack = np.stack(arrays) if arrays[0].ndim == 2 else arrays[0]
    return np.asarray(stack), datasets


def lps_to_pixel(ds: pydicom.Dataset, p: Sequence[float]) -> tuple[float, float, float]:
    """(distance from this slice's plane mm, row, col) of an LPS point for a classic MR slice."""
    iop = np.asarray(ds.ImageOrientationPatient, float)
    ipp = np.asarray(ds.ImagePositionPatient, float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    d = np.asarray(p, float) - ipp
    dr, dc = (float(v) for v in ds.PixelSpacing)
    return float(d @ normal), float(d @ col_dir / dr), float(d @ row_dir / dc)
