"""Pixels of the secondary captures: oedema overlays and the summary key image.

Pure numpy + Pillow, no DICOM. Every image carries the burned-in banner
"MarrowMap <version> - NOT FOR DIAGNOSTIC USE". The grey image is windowed on robust
percentiles of the whole series (same window on every slice); the oedema score is
blended in a yellow-red colour map where it is above zero (nothing where it is zero)
on a fixed study-wide scale shown by the colour bar; region outlines use the SEG
segment colours; orientation letters come from the direction cosines.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from workers.analysis.result import REGION_LABELS
from workers.dicom_out.geometry import edge_letters
from workers.dicom_out.seg import REGION_RGB, REGION_TEXT, REGIONS
from workers.dicom_out.stack import FrameMaps

RGBArray = NDArray[np.uint8]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF")
BANNER_COLOUR = (255, 210, 0)
TEXT_COLOUR = (235, 235, 235)
MUTED_COLOUR = (170, 170, 170)
BACKGROUND = (0, 0, 0)
PANEL_BACKGROUND = (24, 24, 28)
IMAGE_TARGET_PX = 768  # longer side of the image area
OVERLAY_ALPHA = 0.6
EFFUSION_RGB = (120, 160, 255)
# colour map anchors (position 0..1 -> RGB): dark red -> red -> orange -> yellow
_CMAP_ANCHORS = ((0.0, (150, 0, 0)), (0.35, (230, 30, 0)), (0.7, (255, 150, 0)), (1.0, (255, 255, 90)))


@lru_cache(maxsize=16)
def font(size: int, bold: bool = False) -> Font:
    """DejaVu Sans (bold) at ``size`` px, or Pillow's scalable default font."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in _FONT_DIRS:
        path = Path(folder) / name
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def colour_lut() -> NDArray[np.uint8]:
    """256 x 3 colour map for scores 0..max."""
    pos = np.linspace(0.0, 1.0, 256)
    xs = [a for a, _ in _CMAP_ANCHORS]
    lut = np.stack([np.interp(pos, xs, [c[i] for _, c in _CMAP_ANCHORS]) for i in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


@dataclass(frozen=True)
class DisplayScale:
    """Study-wide grey window and score range, so every slice is shown alike."""

    grey_low: float
    grey_high: float
    score_max: float

    @classmethod
    def for_frames(cls, frames: Sequence[FrameMaps]) -> DisplayScale:
        grey = np.concatenate([f.gray.ravel() for f in frames])
        top = float(np.percentile(grey, 99.0)) if grey.size else 1.0
        body = grey[grey > 0.05 * top] if top > 0 else grey
        low, high = (float(np.percentile(body, 0.5)), float(np.percentile(body, 99.5))) if body.size else (0.0, 1.0)
        scores = np.concatenate([f.score[f.score > 0].ravel() for f in frames])
        return cls(low, max(high, low + 1e-3), nice_ceiling(float(np.percentile(scores, 99))) if scores.size else 1.0)


def nice_ceiling(value: float) -> float:
    """The next 'nice' number (1, 2, 2.5, 5 x 10^n) at or above ``value``."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * 10**exp >= value - 1e-12:
            return float(step * 10**exp)
    return float(10.0 ** (exp + 1))


def _display_size(fm: FrameMaps) -> tuple[int, int]:
    """(width, height) in display pixels with square pixels."""
    height_mm = fm.frame.rows * fm.frame.spacing[0]
    width_mm = fm.frame.columns * fm.frame.spacing[1]
    px = max(width_mm, height_mm) / IMAGE_TARGET_PX
    return max(1, round(width_mm / px)), max(1, round(height_mm / px))


def _resize(array: NDArray[np.generic], size: tuple[int, int], nearest: bool) -> NDArray[np.float32]:
    img = Image.fromarray(array.astype(np.float32), mode="F")
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    return np.asarray(img.resize(size, method), dtype=np.float32)


def _outlines(labels: NDArray[np.float32]) -> NDArray[np.int32]:
    """Label value on a 2-pixel boundary of each region (0 elsewhere)."""
    lab = labels.astype(np.int32)
    edge = np.zeros(lab.shape, dtype=bool)
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    return np.where(edge & (lab > 0), lab, 0)


def fused_image(fm: FrameMaps, scale: DisplayScale) -> RGBArray:
    """The slice in grey with the oedema colour map and region outlines, square pixels."""
    size = _display_size(fm)
    grey = _resize(fm.gray, size, nearest=False)
    grey = np.clip((grey - scale.grey_low) / (scale.grey_high - scale.grey_low), 0, 1) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    score = _resize(fm.score, size, nearest=False)
    inside = _resize((fm.score > 0).astype(np.float32), size, nearest=True) > 0.5
    level = np.clip(score / scale.score_max, 0, 1)
    colour = colour_lut()[np.round(level * 255).astype(np.int64)].astype(np.float32)
    rgb[inside] = (1 - OVERLAY_ALPHA) * rgb[inside] + OVERLAY_ALPHA * colour[inside]
    edges = _outlines(_resize(fm.regions, size, nearest=True))
    for (_, region), label in REGION_LABELS.items():
        rgb[edges == label] = REGION_RGB[region]
    effusion = _outlines(_resize((fm.effusion > 0).astype(np.float32), size, nearest=True))
    rgb[effusion > 0] = EFFUSION_RGB
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


#: Longest string drawn in one piece; free text beyond it is cut with an ellipsis.
MAX_DRAWN_CHARS = 300
_WHITESPACE_CONTROLS = frozenset("\t\n\r\v\f\x85\u2028\u2029")


def clean_text(text: str, limit: int = MAX_DRAWN_CHARS) -> str:
    """Free text made safe to draw: line breaks and tabs become spaces; other control, format
    (bidi overrides/isolates, zero-width), private-use and unassigned characters are dropped;
    cut to ``limit`` characters with an ellipsis. Received text can then neither break the text
    layout nor reorder what is burned into the pixels."""
    kept = []
    for char in text:
        if char in _WHITESPACE_CONTROLS:
            kept.append(" ")
        elif unicodedata.category(char) not in ("Cc", "Cf", "Co", "Cs", "Cn"):
            kept.append(char)
    cleaned = " ".join("".join(kept).split())
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1].rstrip() + "\u2026"


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, *,
          fill: tuple[int, int, int] = TEXT_COLOUR, bold: bool = False, anchor: str = "la",
          stroke: int = 0) -> None:
    draw.text(xy, clean_text(text), font=font(size, bold), fill=fill, anchor=anchor, stroke_width=stroke,
              stroke_fill=(0, 0, 0))


def _banner(draw: ImageDraw.ImageDraw, width: int, version: str, title: str) -> None:
    draw.rectangle((0, 0, width, 47), fill=PANEL_BACKGROUND)
    _text(draw, (12, 24), f"MarrowMap {version} \u2014 NOT FOR DIAGNOSTIC USE", 22, fill=BANNER_COLOUR,
          bold=True, anchor="lm")
    if font(22, True).getlength(f"MarrowMap {version} - NOT FOR DIAGNOSTIC USE") + font(20).getlength(title) + 60 < width:
        _text(draw, (width - 12, 24), title, 20, anchor="rm")


def _colour_bar(draw: ImageDraw.ImageDraw, x: int, y: int, height: int, scale: DisplayScale) -> None:
    lut = colour_lut()
    _text(draw, (x, y - 34), "Oedema score", 18, bold=True)
    for i in range(height):
        c = lut[round((height - 1 - i) / max(height - 1, 1) * 255)]
        draw.line((x, y + i, x + 26, y + i), fill=(int(c[0]), int(c[1]), int(c[2])))
    draw.rectangle((x, y, x + 26, y + height), outline=TEXT_COLOUR)
    for frac in (0.0, 0.5, 1.0):
        ty = y + height - frac * height
        draw.line((x + 26, ty, x + 34, ty), fill=TEXT_COLOUR)
        label = f"{frac * scale.score_max:g}" + ("+" if frac == 1.0 else "")
        _text(draw, (x + 40, ty), label, 18, anchor="lm")
    _text(draw, (x, y + height + 14), "no colour = 0", 16, fill=MUTED_COLOUR)


def _legend(draw: ImageDraw.ImageDraw, x: int, y: int) -> int:
    _text(draw, (x, y), "Outlines", 18, bold=True)
    y += 30
    for region in REGIONS:
        draw.line((x, y + 10, x + 28, y + 10), fill=REGION_RGB[region], width=3)
        _text(draw, (x + 38, y + 10), REGION_TEXT[region].replace("intertrochanteric region", "intertroch."),
              17, anchor="lm")
        y += 28
    draw.line((x, y + 10, x + 28, y + 10), fill=EFFUSION_RGB, width=3)
    _text(draw, (x + 38, y + 10), "joint effusion", 17, anchor="lm")
    return y + 28


def _orientation(draw: ImageDraw.ImageDraw, fm: FrameMaps, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    letters = edge_letters(fm.frame)
    kw = {"size": 30, "bold": True, "stroke": 3}
    _text(draw, (x0 + 10, (y0 + y1) / 2), letters["left"], anchor="lm", **kw)  # type: ignore[arg-type]
    _text(draw, (x1 - 10, (y0 + y1) / 2), letters["right"], anchor="rm", **kw)  # type: ignore[arg-type]
    _text(draw, ((x0 + x1) / 2, y0 + 8), letters["top"], anchor="ma", **kw)  # type: ignore[arg-type]
    _text(draw, ((x0 + x1) / 2, y1 - 8), letters["bottom"], anchor="md", **kw)  # type: ignore[arg-type]


PANEL_WIDTH = 230
MIN_IMAGE_HEIGHT = 640  # room for the colour bar, legend and volumes
FOOTER = 44
HEADER = 48


def overlay_image_box(fm: FrameMaps) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the slice inside its overlay image (it is centred vertically)."""
    w, h = _display_size(fm)
    return 0, HEADER + (max(h, MIN_IMAGE_HEIGHT) - h) // 2, w, h


def overlay_frame(fm: FrameMaps, scale: DisplayScale, *, version: str, caption: str,
                  side_lines: Sequence[str]) -> RGBArray:
    """One overlay slice: banner, fused image with letters, colour bar + legend panel, caption."""
    fused = fused_image(fm, scale)
    _, top, w, h = overlay_image_box(fm)
    width, height = w + PANEL_WIDTH, max(h, MIN_IMAGE_HEIGHT) + HEADER + FOOTER
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    canvas.paste(Image.fromarray(fused, "RGB"), (0, top))
    draw = ImageDraw.Draw(canvas)
    _banner(draw, width, version, "Bone marrow oedema map")
    _orientation(draw, fm, (0, top, w, top + h))
    draw.rectangle((w, HEADER, width, height - FOOTER), fill=PANEL_BACKGROUND)
    px = w + 20
    _colour_bar(draw, px, HEADER + 50, 200, scale)
    y = _legend(draw, px, HEADER + 310)
    y += 14
    _text(draw, (px, y), "Oedema volume", 18, bold=True)
    for line in side_lines:
        y += 28
        _text(draw, (px, y), line, 17)
    draw.rectangle((0, height - FOOTER, width, height), fill=PANEL_BACKGROUND)
    _text(draw, (12, height - FOOTER / 2), caption, 18, anchor="lm", fill=MUTED_COLOUR)
    return np.asarray(canvas, dtype=np.uint8)


def key_image(fm: FrameMaps, scale: DisplayScale) -> RGBArray:
    """The fused slice with orientation letters only (the summary's thumbnail)."""
    fused = Image.fromarray(fused_image(fm, scale), "RGB")
    _orientation(ImageDraw.Draw(fused), fm, (0, 0, fused.width, fused.height))
    return np.asarray(fused, dtype=np.uint8)


def wrap(text: str, size: int, width: float, bold: bool = False) -> list[str]:
    """Words of ``text`` wrapped to lines no wider than ``width`` px."""
    f = font(size, bold)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in clean_text(paragraph, len(paragraph)).split():
            trial = f"{line} {word}".strip()
            if line and f.getlength(trial) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


@dataclass(frozen=True)
class SummaryContent:
    """What the summary key image says (all strings already formatted)."""

    version: str
    title: str
    table_header: tuple[str, ...]
    table_rows: tuple[tuple[str, ...], ...]
    findings: str
    notes: tuple[str, ...]


SUMMARY_WIDTH = 1600


def _table(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, content: SummaryContent) -> int:
    col0 = 290
    cols = len(content.table_header) - 1
    col_w = (width - col0) // max(cols, 1)
    row_h = 38
    draw.rectangle((x, y, x + width, y + row_h), fill=(45, 45, 55))
    for i, head in enumerate(content.table_header):
        cx = x + 10 if i == 0 else x + col0 + (i - 1) * col_w + 10
        _text(draw, (cx, y + row_h / 2), head, 22, bold=True, anchor="lm")
    y += row_h
    for r, row in enumerate(content.table_rows):
        if r % 2:
            draw.rectangle((x, y, x + width, y + row_h), fill=(30, 30, 36))
        for i, cell in enumerate(row):
            cx = x + 10 if i == 0 else x + col0 + (i - 1) * col_w + 10
            _text(draw, (cx, y + row_h / 2), cell, 21, anchor="lm", fill=MUTED_COLOUR if i == 0 else TEXT_COLOUR)
        y += row_h
    return y


def summary_image(content: SummaryContent, key_image: RGBArray | None) -> RGBArray:
    """The summary key image: banner, key slice (if any), table per side, findings text."""
    margin = 24
    key_w = 0
    key: Image.Image | None = None
    if key_image is not None:
        key = Image.fromarray(key_image, "RGB")
        factor = min(640 / key.width, 560 / key.height)
        key = key.resize((max(1, round(key.width * factor)), max(1, round(key.height * factor))),
                         Image.Resampling.LANCZOS)
        key_w = key.width + margin
    table_w = SUMMARY_WIDTH - key_w - 2 * margin
    findings = wrap(content.findings, 22, SUMMARY_WIDTH - 2 * margin)
    notes = [line for note in content.notes for line in wrap(note, 18, SUMMARY_WIDTH - 2 * margin)]
    table_h = 38 * (len(content.table_rows) + 1)
    top_h = max(table_h, key.height if key is not None else 0) + 60
    height = HEADER + top_h + 60 + 32 * len(findings) + 26 * len(notes) + margin
    canvas = Image.new("RGB", (SUMMARY_WIDTH, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _banner(draw, SUMMARY_WIDTH, content.version, content.title)
    y = HEADER + margin
    if key is not None:
        canvas.paste(key, (margin, y))
    if content.table_rows:
        _table(draw, margin + key_w, y, table_w, content)
    y = HEADER + top_h
    _text(draw, (margin, y), "Draft findings (machine-generated, not verified by a radiologist)", 22,
          bold=True, fill=BANNER_COLOUR)
    y += 40
    for line in findings:
        _text(draw, (margin, y), line, 22)
        y += 32
    y += 10
    for line in notes:
        _text(draw, (margin, y), line, 18, fill=MUTED_COLOUR)
        y += 26
    return np.asarray(canvas, dtype=np.uint8)
