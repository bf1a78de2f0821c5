"""Pixels of the secondary captures: oedema overlays and the summary key image.

Pure numpy + Pillow, no DICOM. Every image carries the burned-in banner
"MarrowMap <version> - NOT FOR DIAGNOSTIC USE". The grey image is windowed on robust
percentiles of the whole series (same window on every slice). The oedema score (the
fluid-sensitive signal on the study's own scale: fat = 0, muscle = 1, oedema > 1) is
blended in a red-yellow colour map where the result reports oedema (nothing elsewhere),
on the same fixed scale (0 to ``SCORE_MAX``) in every study; the colour bar says what
the numbers mean. Region and effusion outlines use the SEG segment colours, which differ
between the sides; orientation letters come from the direction cosines. Text is fitted
to its box (smaller font, then cut with an ellipsis) so nothing runs into a neighbour.
"""

from __future__ import annotations

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
from workers.dicom_out.levels import Levels
from workers.dicom_out.seg import REGIONS, SEGMENT_RGB, SIDE_VALUE, SIDES
from workers.dicom_out.stack import FrameMaps, bounding_box

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
#: top of the colour scale: three times the muscle signal (brighter pixels get the top colour)
SCORE_MAX = 3.0
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


@lru_cache(maxsize=1)
def colour_lut() -> NDArray[np.uint8]:
    """256 x 3 colour map for scores 0..max (computed once; read only)."""
    pos = np.linspace(0.0, 1.0, 256)
    xs = [a for a, _ in _CMAP_ANCHORS]
    anchors = np.stack([np.interp(pos, xs, [c[i] for _, c in _CMAP_ANCHORS]) for i in range(3)], axis=1)
    lut = np.round(anchors).astype(np.uint8)
    lut.flags.writeable = False
    return lut


@lru_cache(maxsize=1)
def _outline_colours() -> tuple[tuple[NDArray[np.bool_], NDArray[np.uint8]], ...]:
    """Per label map (regions: ``REGION_LABELS``, effusion: ``SIDE_VALUE``), which uint8 values get an
    outline and its colour; other values get none."""
    tables = []
    for colours in ({label: SEGMENT_RGB[key] for key, label in REGION_LABELS.items()},
                    {SIDE_VALUE[side]: SEGMENT_RGB[(side, "effusion")] for side in SIDES}):
        drawn, lut = np.zeros(256, dtype=bool), np.zeros((256, 3), dtype=np.uint8)
        for value, rgb in colours.items():
            drawn[value], lut[value] = True, rgb
        tables.append((drawn, lut))
    return tuple(tables)


@dataclass(frozen=True)
class DisplayScale:
    """Study-wide grey window, so every slice is shown alike (the score scale is fixed: 0 to ``SCORE_MAX``)."""

    grey_low: float
    grey_high: float

    @classmethod
    def for_frames(cls, frames: Sequence[FrameMaps]) -> DisplayScale:
        """The 0.5th to 99.5th percentile of the body: the pixels brighter than 5% of the 99th percentile."""
        grey = np.concatenate([f.gray.ravel() for f in frames])
        levels = Levels.of(grey)
        if levels is not None:  # whole numbers (stored pixel values): counted, not partitioned
            top = levels.percentile(99.0)
            body = levels.above(0.05 * top) if top > 0 else levels
            low, high = (body.percentile(0.5), body.percentile(99.5)) if body.size else (0.0, 1.0)
        else:
            top = float(np.percentile(grey, 99.0)) if grey.size else 1.0
            values = grey[grey > 0.05 * top] if top > 0 else grey
            low, high = (float(v) for v in np.percentile(values, [0.5, 99.5])) if values.size else (0.0, 1.0)
        return cls(low, max(high, low + 1e-3))


def _display_size(fm: FrameMaps) -> tuple[int, int]:
    """(width, height) in display pixels with square pixels."""
    height_mm = fm.frame.rows * fm.frame.spacing[0]
    width_mm = fm.frame.columns * fm.frame.spacing[1]
    px = max(width_mm, height_mm) / IMAGE_TARGET_PX
    return max(1, round(width_mm / px)), max(1, round(height_mm / px))


def _resize(array: NDArray[np.float32], size: tuple[int, int],
            window: tuple[int, int, int, int] | None = None) -> NDArray[np.float32]:
    """``array`` resized to ``size`` (width, height), bicubic; with ``window`` (left, top, right, bottom
    in the resized pixels) only that part of the result."""
    img = Image.fromarray(np.asarray(array, dtype=np.float32), mode="F")
    if window is None:
        return np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    left, top, right, bottom = window
    sx, sy = img.width / size[0], img.height / size[1]
    part = img.resize((right - left, bottom - top), Image.Resampling.BICUBIC,
                      box=(left * sx, top * sy, right * sx, bottom * sy))
    return np.asarray(part, dtype=np.float32)


def _resize_labels(labels: NDArray[np.generic], size: tuple[int, int]) -> NDArray[np.uint8]:
    """Small labels (0..255) resized to ``size`` (width, height), nearest."""
    img = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="L")
    return np.asarray(img.resize(size, Image.Resampling.NEAREST), dtype=np.uint8)


def _outlines(labels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Label value on a 2-pixel boundary of each region (0 elsewhere)."""
    edge = np.zeros(labels.shape, dtype=bool)
    differs = labels[:-1, :] != labels[1:, :]
    edge[:-1, :] |= differs
    edge[1:, :] |= differs
    differs = labels[:, :-1] != labels[:, 1:]
    edge[:, :-1] |= differs
    edge[:, 1:] |= differs
    return np.where(edge, labels, 0).astype(np.uint8)


def fused_image(fm: FrameMaps, scale: DisplayScale) -> RGBArray:
    """The slice in grey with the oedema colour map and region outlines, square pixels.

    Rounded to 8 bits per channel once per pixel: the grey image as it is, the oedema blended from
    the unrounded grey.
    """
    size = _display_size(fm)
    grey = _resize(fm.gray, size) - scale.grey_low  # windowed in place from here on
    grey /= scale.grey_high - scale.grey_low
    np.clip(grey, 0, 1, out=grey)
    grey *= 255.0
    shade = np.round(grey).astype(np.uint8)
    rgb = np.stack([shade, shade, shade], axis=-1)
    coloured = _resize_labels(fm.score > 0, size) > 0
    box = bounding_box(coloured)
    if box is not None:  # the score is resized only where it is shown: about a tenth of the slice
        left, top, right, bottom = box
        inside = coloured[top:bottom, left:right]
        score = _resize(fm.score, size, box)[inside]
        level = np.clip(score / SCORE_MAX, 0, 1)
        colour = colour_lut()[np.round(level * 255).astype(np.int64)].astype(np.float32)
        blended = (1 - OVERLAY_ALPHA) * grey[top:bottom, left:right][inside][:, None] + OVERLAY_ALPHA * colour
        rgb[top:bottom, left:right][inside] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    for (outlined, lut), labels in zip(_outline_colours(), (fm.regions, fm.effusion), strict=True):
        resized = _resize_labels(labels, size)
        box = bounding_box(resized != 0)
        if box is None:
            continue
        # outlines lie within the labelled box and one pixel around it (where it meets label 0)
        height, width = resized.shape
        left, top, right, bottom = max(box[0] - 1, 0), max(box[1] - 1, 0), min(box[2] + 1, width), min(box[3] + 1, height)
        edges = _outlines(resized[top:bottom, left:right])
        drawn = outlined[edges]
        rgb[top:bottom, left:right][drawn] = lut[edges[drawn]]
    return rgb


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


def fit(text: str, size: int, width: float, bold: bool = False, min_size: int = 12) -> tuple[str, int]:
    """``text`` and a font size at which it is at most ``width`` px wide: the size shrinks down to
    ``min_size``, then the text is cut and ends with an ellipsis."""
    for s in range(size, min_size - 1, -1):
        if font(s, bold).getlength(text) <= width:
            return text, s
    f = font(min_size, bold)
    while text and f.getlength(text + "\u2026") > width:
        text = text[:-1]
    return text.rstrip() + "\u2026", min_size


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, *,
          fill: tuple[int, int, int] = TEXT_COLOUR, bold: bool = False, anchor: str = "la",
          stroke: int = 0, width: float | None = None) -> None:
    """Draw ``text`` (cleaned, ``clean_text``); with ``width``, fitted to that many pixels (``fit``)."""
    text = clean_text(text)
    if width is not None:
        text, size = fit(text, size, width, bold)
    draw.text(xy, text, font=font(size, bold), fill=fill, anchor=anchor, stroke_width=stroke,
              stroke_fill=(0, 0, 0))


def _banner(draw: ImageDraw.ImageDraw, width: int, version: str, title: str) -> None:
    draw.rectangle((0, 0, width, 47), fill=PANEL_BACKGROUND)
    banner = f"MarrowMap {version} \u2014 NOT FOR DIAGNOSTIC USE"
    _text(draw, (12, 24), banner, 22, fill=BANNER_COLOUR, bold=True, anchor="lm")
    room = width - 24 - font(22, True).getlength(banner) - 36
    if room > 120:
        _text(draw, (width - 12, 24), title, 20, anchor="rm", width=room)


#: what the colour bar's numbers mean, one line each
SCALE_LINES = ("STIR signal on this study's", "scale: 0 = fat, 1 = muscle;", "oedema is brighter (> 1).",
               "Colour only where the", "result reports oedema.")


def _colour_bar(draw: ImageDraw.ImageDraw, x: int, y: int, height: int, sequence: str) -> int:
    """The colour bar with its ticks and its definition; returns the y below it."""
    lut = colour_lut()
    _text(draw, (x, y - 34), "Oedema score", 18, bold=True)
    for i in range(height):
        c = lut[round((height - 1 - i) / max(height - 1, 1) * 255)]
        draw.line((x, y + i, x + 26, y + i), fill=(int(c[0]), int(c[1]), int(c[2])))
    draw.rectangle((x, y, x + 26, y + height), outline=TEXT_COLOUR)
    ticks = ((0.0, "0  fat"), (1.0, "1  muscle"), (2.0, "2"), (SCORE_MAX, f"{SCORE_MAX:g}+"))
    for value, label in ticks:
        ty = y + height - value / SCORE_MAX * height
        draw.line((x + 26, ty, x + 34, ty), fill=TEXT_COLOUR)
        _text(draw, (x + 40, ty), label, 17, anchor="lm", width=PANEL_WIDTH - 60)
    y += height + 12
    for line in SCALE_LINES:
        _text(draw, (x, y), line.replace("STIR", sequence), 15, fill=MUTED_COLOUR, width=PANEL_WIDTH - 30)
        y += 19
    return y


def _legend(draw: ImageDraw.ImageDraw, x: int, y: int) -> int:
    """Outline colours, one swatch per side (R, L); returns the y below it."""
    _text(draw, (x, y), "Outlines", 18, bold=True)
    _text(draw, (x + 130, y + 2), "R", 16, fill=MUTED_COLOUR)
    _text(draw, (x + 166, y + 2), "L", 16, fill=MUTED_COLOUR)
    y += 28
    rows: tuple[tuple[str, str], ...] = (*((r, r) for r in REGIONS), ("effusion", "effusion"))
    names = {"head": "femoral head", "neck": "femoral neck", "intertrochanteric": "intertroch.",
             "effusion": "joint effusion"}
    for part, _ in rows:
        _text(draw, (x, y + 10), names[part], 16, anchor="lm", width=120)
        for k, side in enumerate(SIDES):
            draw.line((x + 126 + 36 * k, y + 10, x + 152 + 36 * k, y + 10),
                      fill=SEGMENT_RGB[(side, part)], width=3)  # type: ignore[index]
        y += 25
    return y


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


@lru_cache(maxsize=4)
def _overlay_panels(w: int, height: int, version: str, sequence: str, side_lines: tuple[str, ...]) -> Image.Image:
    """Everything of an overlay that does not depend on its slice: banner, colour bar + legend panel, footer.

    Drawn once per study (every overlay of a series has the same size); callers draw on a copy.
    """
    width = w + PANEL_WIDTH
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _banner(draw, width, version, "Bone marrow oedema map")
    draw.rectangle((w, HEADER, width, height - FOOTER), fill=PANEL_BACKGROUND)
    px = w + 20
    y = _colour_bar(draw, px, HEADER + 50, 160, sequence)
    y = _legend(draw, px, y + 16)
    y += 10
    _text(draw, (px, y), "Oedema volume", 18, bold=True)
    for line in side_lines:
        y += 26
        _text(draw, (px, y), line, 17, width=PANEL_WIDTH - 30)
    draw.rectangle((0, height - FOOTER, width, height), fill=PANEL_BACKGROUND)
    return canvas


def overlay_frame(fm: FrameMaps, fused: RGBArray, *, version: str, caption: str,
                  side_lines: Sequence[str], sequence: str = "STIR") -> RGBArray:
    """One overlay slice: banner, the fused image (``fused_image``) with letters, colour bar + legend panel,
    caption."""
    _, top, w, h = overlay_image_box(fm)
    height = max(h, MIN_IMAGE_HEIGHT) + HEADER + FOOTER
    canvas = _overlay_panels(w, height, version, sequence, tuple(side_lines)).copy()
    canvas.paste(Image.fromarray(fused, "RGB"), (0, top))  # between banner and footer
    draw = ImageDraw.Draw(canvas)
    _orientation(draw, fm, (0, top, w, top + h))
    _text(draw, (12, height - FOOTER / 2), caption, 18, anchor="lm", fill=MUTED_COLOUR, width=canvas.width - 24)
    return np.asarray(canvas, dtype=np.uint8)


def key_image(fm: FrameMaps, fused: RGBArray) -> RGBArray:
    """The fused slice (``fused_image``) with orientation letters only (the summary's thumbnail)."""
    image = Image.fromarray(fused, "RGB")
    _orientation(ImageDraw.Draw(image), fm, (0, 0, image.width, image.height))
    return np.asarray(image, dtype=np.uint8)


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
#: black bands above and below the summary: viewers print their corner text (date, series; window)
#: there, and the summary fills the viewport's width (OHIF printed over the banner and the notes)
SUMMARY_TOP_MARGIN = 80
SUMMARY_BOTTOM_MARGIN = 60


def _table(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, content: SummaryContent) -> int:
    col0 = 290
    cols = len(content.table_header) - 1
    col_w = (width - col0) // max(cols, 1)
    row_h = 38
    draw.rectangle((x, y, x + width, y + row_h), fill=(45, 45, 55))
    room = [col0 - 20, *([col_w - 20] * cols)]  # 10 px padding on both sides of every cell
    for i, head in enumerate(content.table_header):
        cx = x + 10 if i == 0 else x + col0 + (i - 1) * col_w + 10
        _text(draw, (cx, y + row_h / 2), head, 22, bold=True, anchor="lm", width=room[i])
    y += row_h
    for r, row in enumerate(content.table_rows):
        if r % 2:
            draw.rectangle((x, y, x + width, y + row_h), fill=(30, 30, 36))
        for i, cell in enumerate(row):
            cx = x + 10 if i == 0 else x + col0 + (i - 1) * col_w + 10
            _text(draw, (cx, y + row_h / 2), cell, 21, anchor="lm", fill=MUTED_COLOUR if i == 0 else TEXT_COLOUR,
                  width=room[i])
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
    _text(draw, (margin, y), "Findings", 22, bold=True, fill=BANNER_COLOUR)
    y += 40
    for line in findings:
        _text(draw, (margin, y), line, 22)
        y += 32
    y += 10
    for line in notes:
        _text(draw, (margin, y), line, 18, fill=MUTED_COLOUR)
        y += 26
    top = np.zeros((SUMMARY_TOP_MARGIN, SUMMARY_WIDTH, 3), dtype=np.uint8)
    bottom = np.zeros((SUMMARY_BOTTOM_MARGIN, SUMMARY_WIDTH, 3), dtype=np.uint8)
    return np.vstack([top, np.asarray(canvas, dtype=np.uint8), bottom])
