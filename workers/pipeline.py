# mypy: disallow-untyped-calls=False
"""One study folder -> ``result.json``, voxel maps and DICOM outputs (SR, SEG, overlays). No Celery, no network.

``analyze_study_dir`` never raises for a bad study: a study that cannot be analysed
(no fluid-sensitive series, not a hip, single slice...) gives ``status="not_applicable"``
with the reason; an unexpected internal error gives ``status="failed"`` with the reason.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import SimpleITK as sitk
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from marrowmap import __version__
from marrowmap.logs import get_logger
from marrowmap.settings import Settings
from workers.analysis.analyze import SeriesAnalysis, StageTimer, analyze_images
from workers.analysis.maps import AnalysisMaps
from workers.analysis.params import AnalysisParameters
from workers.analysis.result import Algorithm, AnalysisResult, SeriesReport, SeriesUsed
from workers.dicom_out.findings import draft_findings
from workers.io.load import StudyLoad, load_study
from workers.io.select import select_series
from workers.io.types import LoadedSeries

if TYPE_CHECKING:
    from workers.followup.prior import PriorStudy

log = get_logger(__name__)

Progress = Callable[[str], None]

MAP_FILES = {
    "oedema": "oedema_mask.nii.gz",
    "score": "score.nii.gz",
    "regions": "regions.nii.gz",
    "effusion": "effusion.nii.gz",
    "marrow": "marrow.nii.gz",
}
RESULT_FILE = "result.json"
MIN_SLICES = 3
#: BodyPartExamined values that are certainly not a hip or pelvis.
OTHER_BODY_PARTS = frozenset({
    "KNEE", "BRAIN", "HEAD", "SKULL", "SHOULDER", "ANKLE", "FOOT", "HAND", "WRIST", "ELBOW", "CSPINE",
    "TSPINE", "LSPINE", "SPINE", "CHEST", "BREAST", "HEART", "NECK", "ABDOMEN", "LEG", "ARM", "ORBIT",
})


def _algorithm(params: AnalysisParameters) -> Algorithm:
    return Algorithm(version=__version__, parameters=params.as_strings())


def _series_reports(study: StudyLoad, selection_reasons: list[str]) -> list[SeriesReport]:
    """Each series with its classification evidence; the selection's reasons go with the series they name."""
    reports = []
    for s in study.loaded:
        why = [f"selection: {r}" for r in selection_reasons
               if s.series_description and s.series_description in r]
        reports.append(SeriesReport(
            series_instance_uid=s.series_instance_uid,
            series_number=s.series_number,
            series_description=s.series_description,
            kind=str(s.classification.kind),
            plane=str(s.classification.plane),
            evidence=list(s.classification.evidence) + [f"warning: {w}" for w in s.warnings] + why,
        ))
    reports.extend(
        SeriesReport(
            series_instance_uid=p.series_instance_uid,
            series_number=p.series_number,
            series_description=p.series_description,
            kind="unknown",
            plane="unknown",
            usable=False,
            problem=f"{p.kind}: {p.reason}",
        )
        for p in study.problems
    )
    return reports


def _study_uid(study: StudyLoad) -> str | None:
    for s in study.loaded:
        for ds in s.datasets:
            uid = ds.get("StudyInstanceUID")
            if uid:
                return str(uid)
    return None


def _study_header(study: StudyLoad) -> dict[str, str]:
    """StudyDate, StudyTime and AccessionNumber of the study (first header that has a study UID)."""
    for s in study.loaded:
        for ds in s.datasets:
            if ds.get("StudyInstanceUID"):
                return {"study_date": str(ds.get("StudyDate", "") or ""),
                        "study_time": str(ds.get("StudyTime", "") or ""),
                        "accession_number": str(ds.get("AccessionNumber", "") or "")}
    return {}


def _not_a_hip(series: LoadedSeries, settings: Settings) -> str:
    """A reason when the headers say this series is some other body part, else ''."""
    ds = series.datasets[0] if series.datasets else None
    if ds is None:
        return ""
    part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    allowed = {p.upper() for p in settings.route_body_parts}
    text = " ".join(str(ds.get(k, "") or "") for k in ("StudyDescription", "SeriesDescription", "ProtocolName")).lower()
    hip_words = any(w in text for w in settings.route_description_keywords)
    if part and part not in allowed and part in OTHER_BODY_PARTS and not hip_words:
        return f"the study shows {part.lower()} (BodyPartExamined), not a hip or pelvis"
    return ""


def _slice_thickness(series: LoadedSeries) -> float | None:
    """SliceThickness of a series (classic or Enhanced MR), None when the headers do not say."""
    for ds in series.datasets[:1]:
        value = ds.get("SliceThickness")
        if value is None:
            for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
                items = ds.get(group) or []
                measures = items[0].get("PixelMeasuresSequence") if items else None
                if measures and measures[0].get("SliceThickness") is not None:
                    value = measures[0].SliceThickness
                    break
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None
    return None


def _label(series: LoadedSeries) -> str:
    c = series.classification
    desc = series.series_description or "unnamed"
    return f"'{desc}' ({c.kind}, {c.plane})"


def _write_maps(analysis: SeriesAnalysis, out_dir: Path) -> None:
    maps = analysis.maps
    images = {"oedema": maps.oedema, "score": maps.score, "regions": maps.regions, "effusion": maps.effusion,
              "marrow": maps.marrow}
    for key, name in MAP_FILES.items():
        sitk.WriteImage(images[key], str(out_dir / name), True)


def write_result(result: AnalysisResult, out_dir: Path) -> Path:
    """Write ``result.json`` atomically (temporary file, then rename)."""
    path = out_dir / RESULT_FILE
    tmp = out_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(result.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass
class _Outcome:
    """An analysis result plus what the DICOM builders need."""

    result: AnalysisResult
    fluid: LoadedSeries | None = None
    maps: AnalysisMaps | None = None
    sources: list[Dataset] = field(default_factory=list)


def _analyze(input_dir: Path, out_dir: Path, settings: Settings, params: AnalysisParameters,
             timer: StageTimer, not_applicable_reason: str = "") -> _Outcome:
    with timer.stage("load", "loading the study"):
        study = load_study(input_dir)
    with timer.stage("select", "identifying the series"):
        selection = select_series(study.loaded, study.problems)
    base = {
        "study_instance_uid": _study_uid(study),
        **_study_header(study),
        "series": _series_reports(study, selection.reasons),
        "algorithm": _algorithm(params),
    }
    all_headers = [ds for s in study.loaded for ds in s.datasets]
    fluid = selection.fluid_sensitive
    if fluid is None or not_applicable_reason:
        # not analysed: the SR and summary still need a study to go into, even when no series loaded
        headers = all_headers or source_headers(input_dir)
        if base["study_instance_uid"] is None and headers:
            base["study_instance_uid"] = str(headers[0].StudyInstanceUID)
        reason = (not_applicable_reason or selection.not_applicable_reason
                  or "no usable fluid-sensitive fat-suppressed series")
        return _Outcome(AnalysisResult(status="not_applicable", reason=reason, timings_s=timer.timings, **base),
                        sources=headers)
    t1 = selection.t1
    used = SeriesUsed(fluid_sensitive=fluid.series_instance_uid, t1=t1.series_instance_uid if t1 is not None else None)
    other = _not_a_hip(fluid, settings)
    n_slices = fluid.image.GetSize()[2]
    if not other and n_slices < MIN_SLICES:
        other = f"the fluid-sensitive series has {n_slices} slice(s); a volume is needed"
    if other:
        return _Outcome(AnalysisResult(status="not_applicable", reason=other, series_used=used,
                                       timings_s=timer.timings, **base), fluid=fluid, sources=all_headers)
    analysis = analyze_images(fluid.image, t1.image if t1 is not None else None, params, timer=timer,
                              fluid_label=_label(fluid), t1_label=_label(t1) if t1 is not None else "T1",
                              slice_thickness_mm=_slice_thickness(fluid))
    if not any(s.localized for s in analysis.sides.values()):
        reasons = "; ".join(f"{k}: {v.reason}" for k, v in analysis.sides.items())
        return _Outcome(AnalysisResult(status="not_applicable", series_used=used, timings_s=timer.timings,
                                       reason=f"no femoral head found in the field of view ({reasons})",
                                       quality=analysis.quality, **base), fluid=fluid, sources=all_headers)
    if not analysis.t1_used:
        used = SeriesUsed(fluid_sensitive=used.fluid_sensitive, t1=None)
    with timer.stage("write", "writing maps"):
        _write_maps(analysis, out_dir)
    result = AnalysisResult(status="analyzed", series_used=used, sides=analysis.sides, quality=analysis.quality,
                            timings_s=timer.timings, **base)
    return _Outcome(result, fluid=fluid, maps=analysis.maps,
                    sources=list(t1.datasets) if (t1 is not None and analysis.t1_used) else [])


def _with_comparison(result: AnalysisResult, prior: PriorStudy | None) -> AnalysisResult:
    """Add the comparison with the prior study (analysed studies only); a prior that does not fit is a warning."""
    if prior is None or result.status != "analyzed":
        return result
    from workers.followup.compare import ComparisonError, compare_results

    try:
        comparison = compare_results(result, prior.result, prior.ref)
    except ComparisonError as exc:
        log.warning("comparison_skipped", study_instance_uid=result.study_instance_uid,
                    prior_study_instance_uid=prior.ref.study_instance_uid, reason=str(exc))
        quality = result.quality.model_copy(
            update={"warnings": [*result.quality.warnings, f"no comparison with the prior study: {exc}"]})
        return result.model_copy(update={"quality": quality})
    log.info("comparison_done", study_instance_uid=result.study_instance_uid,
             prior_study_instance_uid=prior.ref.study_instance_uid,
             statuses={side: c.status for side, c in comparison.sides.items()})
    return result.model_copy(update={"comparison": comparison})


def _with_outputs(outcome: _Outcome, out_dir: Path, settings: Settings, timer: StageTimer,
                  prior: PriorStudy | None = None, *, dicom_outputs: bool = True) -> AnalysisResult:
    """Add the comparison, the draft findings and build the DICOM outputs (SR, SEG, overlays) next to result.json."""
    compared = _with_comparison(outcome.result, prior)
    result = compared.model_copy(update={"findings_text": draft_findings(compared)})
    if not dicom_outputs:
        return result.model_copy(update={"timings_s": dict(timer.timings)})
    # highdicom & co. load only once the analysis is done (the worker has them loaded at start)
    from workers.dicom_out.build import build_outputs

    with timer.stage("outputs", "writing DICOM outputs (SR, SEG, overlays)"):
        prior_key = prior.key_image() if prior is not None and result.comparison is not None else None
        outputs = build_outputs(result, outcome.fluid, outcome.maps, out_dir, settings=settings,
                                source_datasets=outcome.sources, prior_key_image=prior_key)
    return result.model_copy(update={"outputs": outputs, "timings_s": dict(timer.timings)})


def _headers(folder: Path, limit: int) -> Iterator[Dataset]:
    for path in sorted(p for p in folder.rglob("*") if p.is_file())[:limit]:
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, struct.error):
            continue
        if all(ds.get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
            yield ds


def source_headers(folder: Path, limit: int = 2000) -> list[Dataset]:
    """Headers (no pixel data) of the DICOM files under ``folder`` that name a study, series and instance."""
    return list(_headers(folder, limit))


def has_source_header(folder: Path) -> bool:
    """Whether ``folder`` holds a DICOM file that ``source_headers`` would return (stops at the first)."""
    return next(_headers(folder, 2000), None) is not None


def _failure_outputs(result: AnalysisResult, input_dir: Path, out_dir: Path, settings: Settings) -> AnalysisResult:
    """The failed result with its SR + summary (status and reason) for the PACS, when they can be built."""
    from workers.dicom_out.build import build_outputs

    headers = source_headers(input_dir)
    if not headers:
        return result
    failed = result.model_copy(update={"study_instance_uid": str(headers[0].StudyInstanceUID)})
    failed = failed.model_copy(update={"findings_text": draft_findings(failed)})
    try:
        outputs = build_outputs(failed, None, None, out_dir, settings=settings, source_datasets=headers)
    except Exception as exc:  # second boundary: the failure is recorded either way
        log.exception("failure_outputs_failed", input_dir=str(input_dir), error=f"{type(exc).__name__}: {exc}")
        return failed
    return failed.model_copy(update={"outputs": outputs})


def analyze_study_dir(
    input_dir: Path,
    out_dir: Path,
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    prior: PriorStudy | None = None,
    dicom_outputs: bool = True,
    not_applicable_reason: str = "",
) -> AnalysisResult:
    """Analyse one study folder; write ``out_dir/result.json``, the maps and (unless ``dicom_outputs``
    is False, as in the accuracy benchmark) the DICOM outputs; never raise for a bad study.

    ``prior``: the patient's prior analysed study; when given (and this study is analysed) the
    result, the findings, the SR and the summary image carry the comparison with it.
    ``not_applicable_reason``: the study must not be analysed (e.g. it arrived incomplete); the
    result and the SR/summary outputs carry this reason. A failed analysis still writes its SR
    and summary (status and reason) when the folder has any readable source header.
    """
    settings = settings or Settings()
    params = AnalysisParameters()
    out_dir.mkdir(parents=True, exist_ok=True)
    timer = StageTimer(progress=progress)
    start = time.perf_counter()
    try:
        outcome = _analyze(Path(input_dir), out_dir, settings, params, timer, not_applicable_reason)
        result = _with_outputs(outcome, out_dir, settings, timer, prior, dicom_outputs=dicom_outputs)
    except Exception as exc:  # boundary of the analysis: record the failure in result.json, never crash the caller
        log.exception("analysis_failed", input_dir=str(input_dir), error=f"{type(exc).__name__}: {exc}")
        result = AnalysisResult(status="failed", reason=f"internal error: {type(exc).__name__}: {exc}",
                                algorithm=_algorithm(params), timings_s=dict(timer.timings))
        if dicom_outputs:
            result = _failure_outputs(result, Path(input_dir), out_dir, settings)
    timings = dict(result.timings_s)
    timings["total"] = round(time.perf_counter() - start, 3)
    result = result.model_copy(update={"timings_s": timings})
    write_result(result, out_dir)
    log.info("analysis_done", status=result.status, study_instance_uid=result.study_instance_uid,
             seconds=timings["total"])
    return result
