"""Synthetic hip/pelvis MRI studies (DICOM) with exact ground truth.

``generate_study(out_dir, case, seed, variants=..., small=...)`` writes one study into
``out_dir/dicom`` (``dicom_dir``) and its ground truth beside it into ``out_dir/truth``
(``truth_dir``), and returns the ``GroundTruth``; ``CASES`` and ``VARIANTS`` list what can be asked for.
"""

from workers.phantom.cases import CASES, VARIANTS, PatientIdentity, PhantomError
from workers.phantom.study import dicom_dir, generate_study, truth_dir
from workers.phantom.truth import GroundTruth, SeriesTruth, SideTruth

__all__ = [
    "CASES",
    "VARIANTS",
    "GroundTruth",
    "PatientIdentity",
    "PhantomError",
    "SeriesTruth",
    "SideTruth",
    "dicom_dir",
    "generate_study",
    "truth_dir",
]
