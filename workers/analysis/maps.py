"""Voxel maps produced by the analysis, all on the fluid-sensitive series' grid (LPS)."""

from __future__ import annotations

from dataclasses import dataclass

import SimpleITK as sitk


@dataclass(frozen=True)
class AnalysisMaps:
    """The images behind the numbers in ``AnalysisResult``.

    - ``score``: float32, where the oedema mask is: the fluid-sensitive signal on the study's own
      fat (0) to muscle (1) scale (oedema is brighter than muscle, > 1); 0 elsewhere.
    - ``oedema``: uint8 final oedema mask after clean-up; 1 = right hip, 2 = left hip.
    - ``regions``: uint8 region labels, values from ``result.REGION_LABELS`` (0 = background).
    - ``effusion``: uint8 joint fluid mask; 1 = right, 2 = left.
    - ``marrow``: uint8 segmented proximal femoral marrow; 1 = right, 2 = left (every oedema voxel lies in it).
    """

    score: sitk.Image
    oedema: sitk.Image
    regions: sitk.Image
    effusion: sitk.Image
    marrow: sitk.Image
