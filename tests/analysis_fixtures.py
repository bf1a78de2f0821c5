# mypy: disallow-untyped-calls=False
"""Phantom studies analysed once per session, and helpers that compare them with the truth."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from tests.phantom_fixtures import StudyFactory
from workers.analysis.result import AnalysisResult
from workers.phantom import GroundTruth, truth_dir
from workers.pipeline import analyze_study_dir

LABELS = {"right": 1, "left": 2}


@dataclass(frozen=True)
class Analysed:
    study: Path
    truth: GroundTruth
    result: AnalysisResult
    out: Path

    def dice(self, side: str) -> float:
        """Dice of this side's oedema mask against the truth mask (same grid, or resampled)."""
        mask_img = sitk.ReadImage(str(self.out / "oedema_mask.nii.gz"))
        truth_img = sitk.ReadImage(str(truth_dir(self.study.parent) / "oedema.nii.gz"))
        if truth_img.GetSize() != mask_img.GetSize() or not np.allclose(truth_img.GetOrigin(), mask_img.GetOrigin()):
            truth_img = sitk.Resample(truth_img, mask_img, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        a = sitk.GetArrayFromImage(mask_img) == LABELS[side]
        b = sitk.GetArrayFromImage(truth_img) == LABELS[side]
        return float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))



AnalysedFactory = Callable[..., Analysed]


@pytest.fixture(scope="session")
def analysed(phantom_study: StudyFactory, tmp_path_factory: pytest.TempPathFactory) -> AnalysedFactory:
    """``analysed(case, *variants, seed=0)``: a small phantom study run through ``analyze_study_dir`` once."""
    cache: dict[tuple[str, tuple[str, ...], int], Analysed] = {}

    def make(case: str, *variants: str, seed: int = 0) -> Analysed:
        key = (case, tuple(sorted(variants)), seed)
        if key not in cache:
            study, truth = phantom_study(case, *variants, seed=seed)
            out = tmp_path_factory.mktemp("analysis-" + "-".join([case, *key[1], str(seed)]))
            cache[key] = Analysed(study=study, truth=truth, result=analyze_study_dir(study, out), out=out)
        return cache[key]

    return make


def copy_study(src: Path, dst: Path, keep: Callable[[Path], bool] = lambda p: True) -> Path:
    """Copy a study's DICOM files to ``dst``, keeping only files ``keep`` accepts."""
    for f in sorted(src.rglob("*.dcm")):
        if not keep(f):
            continue
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    return dst


def rewrite_headers(folder: Path, **values: str) -> None:
    """Set header attributes in every DICOM file of ``folder`` (e.g. BodyPartExamined='KNEE')."""
    for f in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(f)
