"""Voxel maps produced by the analysis, all on the fluid-sensitive series' grid (LPS)."""

from __future__ import annotations

from dataclasses import dataclass

import SimpleITK as sitk


@dataclass(frozen=True)
class AnalysisMaps:
    """The images behind the numbers in ``AnalysisResult``.

    - ``score``: float32 oedema score (0 where not oedematous; larger = more oedema-like).
    - ``oedema``: uint8 final oedema mask after clean-up; 1 = right hip, 2 = left hip.
    - ``regions``: uint8 region labels, values from ``result.REGION_LABELS`` (0 = background).
    - ``effusion``: uint8 joint effusion mask; 1 = right, 2 = left.
    """

    score: sitk.Image
    oedema: sitk.Image
    regions: sitk.Image
    effusion: sitk.Image
