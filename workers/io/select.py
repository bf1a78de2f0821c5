"""Choose the fluid-sensitive fat-suppressed series and the T1 series to analyse, with reasons.

Fluid-sensitive fat-suppressed: prefer coronal STIR, then coronal T2/PD fat-sat, then a
T2/PD-weighted Dixon water image; then the same kinds in other planes (axial, then
sagittal/oblique); ties broken by coverage then finer voxels. T1: non-fat-suppressed
T1-weighted, preferring the fluid series' FrameOfReferenceUID, coronal, coverage, voxels.
No usable fluid-sensitive fat-suppressed series -> ``not_applicable_reason``, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.io.load import SeriesProblem
from workers.io.types import LoadedSeries, Plane, SeriesKind

MIN_SLICES = 3
DIXON_MIN_TR_MS = 1500.0

_FLUID_KIND_RANK = {
    SeriesKind.STIR: 0,
    SeriesKind.T2_FS: 1,
    SeriesKind.PD_FS: 1,
    SeriesKind.DIXON_WATER: 2,
}
_PLANE_RANK = {Plane.CORONAL: 0, Plane.AXIAL: 1, Plane.SAGITTAL: 2, Plane.OBLIQUE: 3, Plane.UNKNOWN: 4}
_FLUID_KINDS_TEXT = "STIR, T2/PD fat-suppressed or T2-weighted Dixon water"


@dataclass
class Selection:
    """The chosen series (or None) with the reasons for every choice and rejection."""

    fluid_sensitive: LoadedSeries | None
    t1: LoadedSeries | None
    reasons: list[str] = field(default_factory=list)
    not_applicable_reason: str | None = None

    @property
    def applicable(self) -> bool:
        return self.not_applicable_reason is None


def describe(series: LoadedSeries) -> str:
    """Short human label: number, description, kind, plane, slices."""
    cls = series.classification
    number = f"#{series.series_number} " if series.series_number is not None else ""
    name = f"'{series.series_description}' " if series.series_description else ""
    fs = ""
    if cls.fat_suppressed and cls.kind is SeriesKind.T1:
        fs = " fat-suppressed"
    elif cls.kind in (SeriesKind.T2, SeriesKind.PD):
        fs = " without fat suppression"
    return f"{number}{name}({cls.kind.value}{fs} {cls.plane.value}, {_n_slices(series)} slices)"


def _size(series: LoadedSeries) -> tuple[int, ...]:
    image: Any = series.image
    return tuple(int(n) for n in image.GetSize())


def _spacing(series: LoadedSeries) -> tuple[float, ...]:
    image: Any = series.image
    return tuple(float(s) for s in image.GetSpacing())


def _n_slices(series: LoadedSeries) -> int:
    return _size(series)[2]


def _coverage_ml(series: LoadedSeries) -> float:
    size = _size(series)
    spacing = _spacing(series)
    return float(np.prod([n * s for n, s in zip(size, spacing, strict=True)])) / 1000.0


def _voxel_mm3(series: LoadedSeries) -> float:
    return float(np.prod(_spacing(series)))


def _repetition_time(series: LoadedSeries) -> float | None:
    ds = series.datasets[0]
    value = ds.get("RepetitionTime")
    if value is None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        timing = shared[0].get("MRTimingAndRelatedParametersSequence") if shared else None
        value = timing[0].get("RepetitionTime") if timing else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _fluid_rejection(series: LoadedSeries) -> str | None:
    """Why a series cannot be the fluid-sensitive fat-suppressed series (None = eligible)."""
    kind = series.classification.kind
    if kind not in _FLUID_KIND_RANK:
        return "not a fluid-sensitive fat-suppressed kind"
    if _n_slices(series) < MIN_SLICES:
        return f"only {_n_slices(series)} slices (need >= {MIN_SLICES} for a volume)"
    if kind is SeriesKind.DIXON_WATER:
        tr = _repetition_time(series)
        if tr is None or tr < DIXON_MIN_TR_MS:
            shown = "unknown" if tr is None else f"{tr:g} ms"
            return f"Dixon water with TR {shown}: not T2/PD-weighted, not fluid-sensitive"
    return None


def _t1_rejection(series: LoadedSeries) -> str | None:
    cls = series.classification
    if cls.kind is not SeriesKind.T1:
        return "not T1-weighted"
    if cls.fat_suppressed:
        return "T1 fat-suppressed: fatty marrow is not bright"
    if _n_slices(series) < MIN_SLICES:
        return f"only {_n_slices(series)} slices (need >= {MIN_SLICES} for a volume)"
    return None


def _frame_of_reference(series: LoadedSeries) -> str:
    return str(series.datasets[0].get("FrameOfReferenceUID", ""))


def _not_applicable(loaded: Sequence[LoadedSeries], problems: Sequence[SeriesProblem], rejected: list[str]) -> str:
    found = [describe(s) for s in loaded]
    text = "no fat-suppressed fluid-sensitive series"
    parts = []
    if found:
        parts.append("found: " + "; ".join(found))
    else:
        parts.append("no series could be loaded")
    if rejected:
        parts.append("rejected: " + "; ".join(rejected))
    fluid_problems = [
        f"'{p.series_description}': {p.reason}"
        for p in problems
        if p.series_description and p.kind not in ("not_an_image", "not_mr")
    ]
    if fluid_problems:
        parts.append("not loadable: " + "; ".join(fluid_problems))
    return f"{text} ({_FLUID_KINDS_TEXT}); " + "; ".join(parts)


def select_series(loaded: Sequence[LoadedSeries], problems: Sequence[SeriesProblem] = ()) -> Selection:
    """Pick the fluid-sensitive fat-suppressed series and the T1 series, recording why."""
    reasons: list[str] = []
    fluid_candidates: list[LoadedSeries] = []
    rejected: list[str] = []
    for series in loaded:
        why = _fluid_rejection(series)
        if why is None:
            fluid_candidates.append(series)
        elif series.classification.kind in _FLUID_KIND_RANK:
            rejected.append(f"{describe(series)}: {why}")
    reasons.extend(f"fluid-sensitive candidate rejected: {r}" for r in rejected)
    if not fluid_candidates:
        return Selection(None, None, reasons, _not_applicable(loaded, problems, rejected))

    def fluid_key(s: LoadedSeries) -> tuple[float, ...]:
        cls = s.classification
        return (_PLANE_RANK[cls.plane], _FLUID_KIND_RANK[cls.kind], -_coverage_ml(s), _voxel_mm3(s))

    fluid_candidates.sort(key=fluid_key)
    fluid = fluid_candidates[0]
    reasons.append(
        f"fluid-sensitive: {describe(fluid)} chosen (plane {fluid.classification.plane.value} ranks "
        f"{_PLANE_RANK[fluid.classification.plane]}, kind {fluid.classification.kind.value} ranks "
        f"{_FLUID_KIND_RANK[fluid.classification.kind]}; coverage {_coverage_ml(fluid):.0f} mL, "
        f"voxel {_voxel_mm3(fluid):.2f} mm3)"
    )
    reasons.extend(f"fluid-sensitive alternative not chosen: {describe(s)}" for s in fluid_candidates[1:])

    frame = _frame_of_reference(fluid)
    t1_candidates: list[LoadedSeries] = []
    for series in loaded:
        why = _t1_rejection(series)
        if why is None:
            t1_candidates.append(series)
        elif series.classification.kind is SeriesKind.T1:
            reasons.append(f"T1 candidate rejected: {describe(series)}: {why}")

    def t1_key(s: LoadedSeries) -> tuple[float, ...]:
        same_frame = 0 if frame and _frame_of_reference(s) == frame else 1
        return (same_frame, _PLANE_RANK[s.classification.plane], -_coverage_ml(s), _voxel_mm3(s))

    t1_candidates.sort(key=t1_key)
    t1 = t1_candidates[0] if t1_candidates else None
    if t1 is None:
        reasons.append("T1: no usable non-fat-suppressed T1-weighted series")
    else:
        same = "same" if frame and _frame_of_reference(t1) == frame else "different"
        reasons.append(
            f"T1: {describe(t1)} chosen ({same} FrameOfReferenceUID as the fluid-sensitive series, "
            f"plane {t1.classification.plane.value})"
        )
        reasons.extend(f"T1 alternative not chosen: {describe(s)}" for s in t1_candidates[1:])
    return Selection(fluid, t1, reasons, None)
