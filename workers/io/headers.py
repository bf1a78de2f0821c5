"""Reading DICOM header values robustly: numbers, orientations, Enhanced MR functional groups."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydicom.dataset import Dataset

ORIENTATION_TOL = 1e-3  # IOP components equal within this are one orientation


def number(value: object) -> float | None:
    """A finite number from a DS/IS/FD value (first of a multi-value), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        result = float(str(value))
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def floats(value: object, count: int) -> tuple[float, ...] | None:
    """Exactly ``count`` finite numbers (IPP, IOP, PixelSpacing), or None."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or len(value) != count:
        return None
    try:
        items = tuple(float(str(v)) for v in value)
    except (TypeError, ValueError):
        return None
    return items if all(math.isfinite(v) for v in items) else None


def same_orientation(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two ImageOrientationPatient values are the same orientation."""
    return all(abs(x - y) <= ORIENTATION_TOL for x, y in zip(a, b, strict=True))


def functional_group_item(ds: Dataset, keyword: str, frame_index: int = 0) -> Dataset | None:
    """First item of a functional-group macro for a frame: per-frame group first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame_index < len(per_frame):
        seq = per_frame[frame_index].get(keyword)
        if seq:
            item: Dataset = seq[0]
            return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(keyword)
        if seq:
            shared_item: Dataset = seq[0]
            return shared_item
    return None


def frame_value(ds: Dataset, frame: int | None, macro: str, keyword: str) -> object:
    """An attribute of a classic image (``frame`` None: top level) or of one frame of a
    multi-frame image (its functional groups, falling back to the top level)."""
    if frame is not None:
        item = functional_group_item(ds, macro, frame)
        if item is not None and keyword in item:
            return item.get(keyword)
    return ds.get(keyword)


def tokens(value: object) -> tuple[str, ...]:
    """A multi-valued CS value as upper-case tokens (missing -> empty)."""
    if value is None:
        return ()
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = [str(v) for v in value]
    else:
        items = [str(value)]
    return tuple(tok.strip().upper() for item in items for tok in item.split("\\") if tok.strip())


def orientation_of(ds: Dataset, frame_index: int = 0) -> tuple[float, ...] | None:
    """ImageOrientationPatient of a classic image or of one frame of an Enhanced MR image."""
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    frame = frame_index if enhanced else None
    return floats(frame_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
