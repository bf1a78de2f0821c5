"""Synthetic hip/pelvis MRI studies (DICOM) with exact ground truth.

``generate_study(out_dir, case, seed, variants=..., small=...)`` writes one study and
returns its ``GroundTruth``; ``CASES`` and ``VARIANTS`` list what can be asked for.
"""

from workers.phantom.cases import CASES, VARIANTS, PatientIdentity, PhantomError
from workers.phantom.study import generate_study
from workers.phantom.truth import GroundTruth, SeriesTruth, SideTruth

__all__ = [
    "CASES",
    "VARIANTS",
    "GroundTruth",
    "PatientIdentity",
    "PhantomError",
    "SeriesTruth",
    "SideTruth",
    "generate_study",
]
