"""A one-paragraph plain-text summary of an ``AnalysisResult`` for the terminal."""

from __future__ import annotations

from workers.analysis.result import AnalysisResult, SideResult


def _side_text(side: SideResult) -> str:
    name = side.side.capitalize()
    if not side.localized:
        return f"{name} hip: not analysed ({side.reason})."
    if side.present is None:
        return f"{name} hip: result withheld ({side.reason})."
    if side.present:
        text = (f"{name} hip: {side.pattern} BME-like signal, {side.oedema_volume_ml:.1f} mL "
                f"({side.head_involvement_pct:.0f}% of head, {side.neck_involvement_pct:.0f}% of neck)")
        if side.subchondral_low_signal_band:
            text += ", subchondral low-signal band"
    else:
        text = f"{name} hip: no BME-like signal ({side.oedema_volume_ml:.1f} mL above threshold)"
    if side.effusion:
        text += f"; joint effusion {side.effusion_volume_ml:.1f} mL"
    elif side.effusion is not None:
        text += "; no joint effusion"
    return text + "."


def summarize(result: AnalysisResult) -> str:
    """Status, per-side findings and the quality statement in one paragraph."""
    if result.status != "analyzed":
        return f"Status: {result.status}. {result.reason}".strip()
    parts = [f"Status: analyzed (confidence {result.quality.confidence})."]
    parts.extend(_side_text(result.sides[s]) for s in ("right", "left") if s in result.sides)
    if result.quality.warnings:
        parts.append("Warnings: " + "; ".join(result.quality.warnings) + ".")
    return " ".join(parts)
