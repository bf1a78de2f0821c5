"""The follow-up comparison on the summary key image: prior and current values side by side.

Adds rows under the per-side table (prior -> current for each hip, the change and the
status), says "follow-up" in the title and names the prior study in the notes. A result
without a comparison keeps its summary unchanged.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw

from workers.analysis.result import AnalysisResult
from workers.dicom_out.findings import fmt_ml, fmt_pct
from workers.dicom_out.render import BANNER_COLOUR, RGBArray, SummaryContent, font
from workers.followup.model import Comparison, SideComparison
from workers.followup.text import STATUS_WORD, fmt_change_pct, fmt_date

ARROW = " \u2192 "


def _pct(value: float | None) -> str:
    return "n/a" if value is None else fmt_pct(value)


def _effusion(present: bool | None, volume: float | None) -> str:
    if present is None:
        return "n/a"
    if present:
        return "yes" + (f" ({fmt_ml(volume)})" if volume is not None else "")
    return "no"


def _change(c: SideComparison) -> str:
    if c.change_ml is None:
        return "-"
    if c.change_ml == 0:
        return "no change"
    text = f"{c.change_ml:+.1f} mL"
    return text + (f" ({fmt_change_pct(c.change_pct)})" if c.change_pct is not None else "")


def side_cells(c: SideComparison | None) -> list[str]:
    """The comparison cells of one hip (same order as ``ROW_LABELS``)."""
    if c is None:
        return ["not compared", *(["-"] * 5)]
    status = STATUS_WORD[c.status].upper()
    if c.status == "not_compared" or c.volume_ml_prior is None or c.volume_ml_current is None:
        return [status, *(["-"] * 5)]
    return [
        status,
        f"{fmt_ml(c.volume_ml_prior)}{ARROW}{fmt_ml(c.volume_ml_current)}",
        _change(c),
        f"{_pct(c.head_pct_prior)}{ARROW}{_pct(c.head_pct_current)}",
        f"{_pct(c.neck_pct_prior)}{ARROW}{_pct(c.neck_pct_current)}",
        f"{_effusion(c.effusion_prior, c.effusion_ml_prior)}{ARROW}"
        f"{_effusion(c.effusion_current, c.effusion_ml_current)}",
    ]


ROW_LABELS = ("Change status", "Volume then \u2192 now", "Volume change", "% head then \u2192 now",
              "% neck then \u2192 now", "Effusion then \u2192 now")


def comparison_rows(comparison: Comparison) -> tuple[tuple[str, ...], ...]:
    """A sub-header row naming the prior MRI, then one row per compared value, right and left hip."""
    right, left = side_cells(comparison.sides.get("right")), side_cells(comparison.sides.get("left"))
    header = (f"PRIOR MRI {fmt_date(comparison.prior.study_date)}", "then \u2192 now", "then \u2192 now")
    return (header, *((label, r, lft) for label, r, lft in zip(ROW_LABELS, right, left, strict=True)))


def with_comparison(content: SummaryContent, result: AnalysisResult) -> SummaryContent:
    """``content`` with the comparison rows and the prior study's reference, when ``result`` has a comparison."""
    comparison = result.comparison
    if comparison is None or not content.table_rows:
        return content
    prior = comparison.prior
    accession = f", accession {prior.accession_number}" if prior.accession_number else ""
    note = (f"Compared with prior MRI of {fmt_date(prior.study_date)}{accession} "
            f"(Study Instance UID {prior.study_instance_uid}).")
    return replace(content, title=f"{content.title} - follow-up of {fmt_date(prior.study_date)}",
                   table_rows=content.table_rows + comparison_rows(comparison),
                   notes=(note, *content.notes))


LABEL_HEIGHT = 64
GAP = 16


def side_by_side(prior: RGBArray, current: RGBArray, prior_label: str, current_label: str) -> RGBArray:
    """The prior and the current key slices next to each other (same height), each with its label above."""
    height = current.shape[0]
    images = []
    for pixels in (prior, current):
        img = Image.fromarray(pixels, "RGB")
        images.append(img.resize((max(1, round(img.width * height / img.height)), height),
                                 Image.Resampling.LANCZOS))
    canvas = Image.new("RGB", (images[0].width + GAP + images[1].width, height + LABEL_HEIGHT), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for img, label in zip(images, (prior_label, current_label), strict=True):
        canvas.paste(img, (x, LABEL_HEIGHT))
        draw.text((x + img.width / 2, LABEL_HEIGHT / 2), label, font=font(44, True), fill=BANNER_COLOUR, anchor="mm")
        x += img.width + GAP
    return np.asarray(canvas, dtype=np.uint8)


def comparison_key_image(result: AnalysisResult, current: RGBArray, prior: RGBArray | None) -> RGBArray:
    """The summary's key image: prior beside current when there is a comparison and a prior key slice."""
    if result.comparison is None or prior is None:
        return current
    return side_by_side(prior, current, f"PRIOR {fmt_date(result.comparison.prior.study_date)}",
                        f"NOW {fmt_date(result.study_date)}")
