"""List what the viewer check should open: the study's SR, SEG and secondary-capture series.

Reads every DICOM file under the given folders (headers, plus the pixels of secondary captures)
and prints one JSON object that ``shoot.mjs`` follows:

- ``sr`` / ``seg``: the SR and SEG series (number, description, UID);
- ``sc_overlays``: the overlay secondary-capture series, each with the 0-based position
  (in InstanceNumber order) of the image with the most coloured pixels, so the
  screenshot shows the slice where the overlay says the most;
- ``sc_summary``: the summary key image series (description mentions "summary" or "key";
  failing that, the single-image SC series when there are several SC series);
- ``seg_source``: the series the first SEG references (the fluid-sensitive series);
- ``pmap`` / ``kos``: the Parametric Map and Key Object Selection series; ``pmap_best_index``:
  the 0-based position (in the source series' InstanceNumber order) of the source image under
  the map's frame with the most non-zero pixels, where a screenshot of the map says the most.

Usage: ``python3 inventory.py [--study STUDY_UID] FOLDER...``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

_SC_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
}
_SUMMARY = re.compile(r"summary", re.IGNORECASE)
_PMAP_CLASS = "1.2.840.10008.5.1.4.1.1.30"
_KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"


class InventoryError(ValueError):
    """The folder does not hold one study with DICOM files."""


@dataclass
class SeriesInfo:
    """One series as the study browser of OHIF labels it."""

    series_uid: str
    number: int | None
    description: str
    modality: str
    sop_class: str
    instances: list[tuple[int, str]] = field(default_factory=list)  # (InstanceNumber, SOPInstanceUID)
    best_index: int = 0
    colour_counts: dict[str, int] = field(default_factory=dict)


def _colour_pixels(ds: Dataset) -> int:
    """Number of pixels whose R, G and B differ (the colour map, not the grey background)."""
    if ds.get("PhotometricInterpretation") != "RGB":
        return 0
    rgb = np.asarray(ds.pixel_array).reshape(-1, 3).astype(np.int16)
    return int(np.count_nonzero((np.abs(rgb[:, 0] - rgb[:, 1]) > 16) | (np.abs(rgb[:, 1] - rgb[:, 2]) > 16)))


def _best_source(pm: Dataset) -> str | None:
    """SOP Instance UID of the source image under the Parametric Map frame with the most non-zero pixels."""
    frames = np.asarray(pm.pixel_array).reshape(int(pm.get("NumberOfFrames", 1)), -1)
    best = int(np.argmax(np.count_nonzero(frames, axis=1)))
    item = pm.PerFrameFunctionalGroupsSequence[best]
    sources = item.DerivationImageSequence[0].SourceImageSequence if "DerivationImageSequence" in item else []
    return str(sources[0].ReferencedSOPInstanceUID) if sources else None


def collect(folders: Sequence[Path], study_uid: str | None = None) -> dict[str, object]:
    """Describe the SR, SEG and SC series of the (single, or given) study under ``folders``."""
    series: dict[str, SeriesInfo] = {}
    studies: set[str] = set()
    seg_refs: dict[str, list[str]] = {}
    pmap_best_source: str | None = None
    paths = sorted({p for folder in folders for p in folder.rglob("*") if p.is_file()})
    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        if "SeriesInstanceUID" not in ds or "StudyInstanceUID" not in ds:
            continue
        if study_uid is not None and ds.StudyInstanceUID != study_uid:
            continue
        studies.add(str(ds.StudyInstanceUID))
        uid = str(ds.SeriesInstanceUID)
        info = series.setdefault(
            uid,
            SeriesInfo(
                series_uid=uid,
                number=int(ds.SeriesNumber) if ds.get("SeriesNumber") is not None else None,
                description=str(ds.get("SeriesDescription", "")),
                modality=str(ds.get("Modality", "")),
                sop_class=str(ds.SOPClassUID),
            ),
        )
        info.instances.append((int(ds.get("InstanceNumber") or 0), str(ds.SOPInstanceUID)))
        if info.sop_class in _SC_CLASSES:
            info.colour_counts[str(ds.SOPInstanceUID)] = _colour_pixels(dcmread(path))
        if info.modality == "SEG":
            seg_refs[uid] = [str(r.SeriesInstanceUID) for r in ds.get("ReferencedSeriesSequence", [])]
        if info.sop_class == _PMAP_CLASS:
            pmap_best_source = _best_source(dcmread(path))
    if not series:
        raise InventoryError(f"no DICOM series under {', '.join(map(str, folders))}")
    if len(studies) != 1:
        raise InventoryError(f"{len(studies)} studies in the folders; give the StudyInstanceUID")
    for info in series.values():
        info.instances.sort()
        if info.colour_counts:
            counts = [info.colour_counts[sop] for _, sop in info.instances]
            info.best_index = int(np.argmax(counts))
    by_kind = sorted(series.values(), key=lambda s: (s.number is None, s.number or 0, s.series_uid))
    sc = [s for s in by_kind if s.sop_class in _SC_CLASSES]
    summary = [s for s in sc if _SUMMARY.search(s.description)]
    if not summary and len(sc) > 1:
        summary = [s for s in sc if len(s.instances) == 1]
    overlays = [s for s in sc if s not in summary]
    segs = [s for s in by_kind if s.modality == "SEG"]
    source_uid = seg_refs[segs[0].series_uid][0] if segs and seg_refs.get(segs[0].series_uid) else None
    source = series.get(source_uid) if source_uid else None
    pmaps = [s for s in by_kind if s.sop_class == _PMAP_CLASS]
    pmap_index = 0
    if source is not None and pmap_best_source is not None:
        sops = [sop for _, sop in source.instances]
        pmap_index = sops.index(pmap_best_source) if pmap_best_source in sops else 0

    def brief(s: SeriesInfo) -> dict[str, object]:
        d = asdict(s)
        d["instance_count"] = len(s.instances)
        d.pop("instances")
        d.pop("colour_counts")
        d["best_colour_pixels"] = max(s.colour_counts.values()) if s.colour_counts else 0
        return d

    return {
        "study_uid": studies.pop(),
        "sr": [brief(s) for s in by_kind if s.modality == "SR"],
        "seg": [brief(s) for s in segs],
        "seg_source": brief(source) if source else None,
        "sc_overlays": [brief(s) for s in overlays],
        "sc_summary": [brief(s) for s in summary],
        "pmap": [brief(s) for s in pmaps],
        "pmap_best_index": pmap_index,
        "kos": [brief(s) for s in by_kind if s.sop_class == _KOS_CLASS],
        "all": [brief(s) for s in by_kind],
    }


def main(argv: list[str]) -> int:
    """Command-line entry: print the inventory JSON."""
    args = argv[1:]
    study_uid = None
    if len(args) >= 2 and args[0] == "--study":
        study_uid, args = args[1], args[2:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        inv = collect([Path(a) for a in args], study_uid)
    except InventoryError as exc:
        print(f"inventory: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(inv, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
