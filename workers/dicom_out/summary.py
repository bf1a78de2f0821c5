"""What the summary key image says: a table per side, the draft findings and the quality notes."""

from __future__ import annotations

from workers.analysis.result import AnalysisResult, SideResult
from workers.dicom_out.findings import (
    fluid_sequence_name,
    fmt_ml,
    fmt_pct,
    fmt_ratio,
    large_effusion,
    supported_pattern,
)
from workers.dicom_out.render import SummaryContent, clean_text

_PATTERN_TEXT = {"diffuse": "diffuse", "focal": "focal subchondral", "regional": "regional"}


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _pct(value: float | None) -> str:
    return "-" if value is None else fmt_pct(value)


def _effusion(side: SideResult) -> str:
    if side.effusion is None:
        return "-"
    if not side.effusion:
        return "no"
    volume = f" ({fmt_ml(side.effusion_volume_ml)})" if side.effusion_volume_ml is not None else ""
    return ("LARGE" if large_effusion(side) else "yes") + volume


def _cell_values(side: SideResult | None, result: AnalysisResult) -> list[str]:
    """One hip's column; numbers of the oedema only where the result reports oedema."""
    if side is None or not side.localized or side.present is None:
        return ["not assessed", *(["-"] * 9)]
    if not side.present:
        return ["none", *(["-"] * 8), _effusion(side)]
    ratio = "-" if side.mean_signal_ratio is None else fmt_ratio(side.mean_signal_ratio)
    if side.p95_signal_ratio is not None:
        ratio += f" / {fmt_ratio(side.p95_signal_ratio)}"
    pattern = supported_pattern(side, result)
    return [
        "PRESENT",
        fmt_ml(side.oedema_volume_ml or 0.0),
        _pct(side.head_involvement_pct),
        _pct(side.neck_involvement_pct),
        _pct(side.intertrochanteric_involvement_pct),
        "-" if pattern is None else _PATTERN_TEXT[pattern],
        _yes_no(side.subchondral_low_signal_band),
        ratio,
        "-" if side.mean_t1_ratio is None else fmt_ratio(side.mean_t1_ratio),
        _effusion(side),
    ]


def _series_name(result: AnalysisResult, uid: str | None) -> str:
    if uid is None:
        return "not available"
    for report in result.series:
        if report.series_instance_uid == uid:
            return f"series {report.series_number if report.series_number is not None else '-'} ({clean_text(report.series_description, 64)})"
    return uid


ROW_LABELS = ("Bone marrow oedema", "Oedema volume", "% femoral head", "% femoral neck",
              "% intertrochanteric", "Pattern", "Subchondral band", "Signal ratio mean / p95",
              "T1 ratio (mean)", "Joint effusion")


def summary_content(result: AnalysisResult, findings_text: str) -> SummaryContent:
    """The summary's table, text and notes for ``result``."""
    version = result.algorithm.version
    if result.status != "analyzed":  # the reason is in the findings text, once
        word = "FAILED" if result.status == "failed" else "NOT ANALYSED"
        return SummaryContent(version=version, title=f"Bone marrow oedema: {word}", table_header=(),
                              table_rows=(), findings=findings_text, notes=())
    right, left = (_cell_values(result.sides.get(s), result) for s in ("right", "left"))
    rows = tuple((label, r, lft) for label, r, lft in zip(ROW_LABELS, right, left, strict=True))
    notes = []
    sequence = fluid_sequence_name(result)
    notes.append(f"Series used: {sequence} {_series_name(result, result.series_used.fluid_sensitive)}"
                 f"; T1 {_series_name(result, result.series_used.t1)}.")
    refs = [f"{s.side}: {s.reference}" for s in result.sides.values() if s.reference]
    if refs:
        notes.append("Reference marrow - " + "; ".join(refs) + ".")
    notes.append("Oedema score: signal on this study's scale fat = 0, muscle = 1; oedema is brighter than muscle.")
    return SummaryContent(version=version, title="Bone marrow oedema summary",
                          table_header=("", "Right hip", "Left hip"), table_rows=rows,
                          findings=findings_text, notes=tuple(notes))
