"""``build_outputs``: turn one study's analysis into the DICOM objects sent back to the PACS.

What is written (under ``out_dir/dicom/``), all in the source study, each in its own new
series (numbers in ``marrowmap.markers.SERIES_NUMBERS``), every object marked as MarrowMap's
(Manufacturer/Model, derived images; see ``marrowmap.markers``):

- analysed (``status == "analyzed"``): the oedema shown (SEG segments, map, overlay colour)
  is the analysis mask of the sides the result reports as present; a side below the
  reporting threshold shows none. Files: ``seg.dcm`` (SEG: oedema, effusion, regions),
  ``pmap.dcm`` (Parametric Map of the oedema score), ``sr.dcm`` (TID 1500 SR),
  ``sc_overlay_NN.dcm`` (one RGB overlay per slice covering the femoral heads / necks or any
  oedema), ``sc_summary.dcm`` (the key image with the table and the draft findings) and
  ``kos.dcm`` (Key Object Selection: the summary and each finding's key overlay). No SEG
  when no region was localised at all (nothing to segment).
- not analysed (``not_applicable`` / ``failed``): a radiologist must see that MarrowMap
  looked at the study and why it gives no numbers (a silent nothing reads as "still
  running" or "normal"). So we write ``sr.dcm`` (the processing summary and the reason),
  ``sc_summary.dcm`` (the reason, readable in any viewer) and ``kos.dcm`` (the summary as
  key image), placed in the study of ``source_datasets`` (or of the fluid series). No SEG,
  no map, no overlays, no numbers. Without any source header there is no study to attach
  them to, and nothing is written.

UIDs are derived from (study UID, sorted input SOP Instance UIDs, algorithm version,
output kind, index) with ``settings.uid_prefix``; dates/times come from the source
headers; so the same input rebuilds byte-identical files.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset

from marrowmap.markers import SERIES_NUMBERS
from marrowmap.settings import Settings
from workers.analysis.maps import AnalysisMaps
from workers.analysis.result import AnalysisResult, OutputFile
from workers.dicom_out.demographics import with_valid_demographics
from workers.dicom_out.findings import draft_findings, fluid_sequence_name, fmt_ml
from workers.dicom_out.geometry import patient_orientation
from workers.dicom_out.kos import build_kos
from workers.dicom_out.pmap import build_pmap
from workers.dicom_out.provenance import (
    contributing_equipment,
    finish_header,
    output_datetime,
    with_type2_attributes,
)
from workers.dicom_out.render import (
    PANEL_WIDTH,
    DisplayScale,
    clean_text,
    fused_image,
    key_image,
    overlay_frame,
    summary_image,
)
from workers.dicom_out.sc import build_sc
from workers.dicom_out.seg import SIDE_VALUE, SIDES, build_seg, effusion_mask, segment_mask
from workers.dicom_out.sr import build_sr
from workers.dicom_out.stack import FrameMaps, keep_reported_oedema, sample_maps
from workers.dicom_out.summary import summary_content
from workers.dicom_out.summary_comparison import comparison_key_image, with_comparison
from workers.dicom_out.uids import UidDeriver
from workers.followup.prior import KEY_IMAGE_FILE
from workers.io.types import LoadedSeries

_SUFFIX = " - NOT FOR DIAGNOSTIC USE"
DESCRIPTIONS = {
    "seg": "MarrowMap BME segmentation" + _SUFFIX,
    "sr": "MarrowMap BME report" + _SUFFIX,
    "sc_overlay": "MarrowMap BME overlay" + _SUFFIX,
    "sc_summary": "MarrowMap BME summary" + _SUFFIX,
    "pmap": "MarrowMap BME score map" + _SUFFIX,
    "kos": "MarrowMap key images" + _SUFFIX,
}
HEAD_NECK_LABELS = (1, 2, 4, 5)  # REGION_LABELS of right/left head and neck
OVERLAY_DERIVATION = ("{sequence} slice in grey; oedema score in colour (fat 0, muscle 1, oedema > 1); "
                      "analysed regions and joint effusion outlined")
SUMMARY_DERIVATION = "Summary of the bone marrow oedema analysis: table, key slice and draft findings"


class OutputInputError(ValueError):
    """The inputs handed to build_outputs do not allow building the outputs."""


def _write(ds: Dataset, out_dir: Path, name: str) -> Path:
    target = out_dir / "dicom" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, target)
    return target


def _record(kind: str, ds: Dataset, path: Path, out_dir: Path) -> OutputFile:
    return OutputFile(kind=kind, path=str(path.relative_to(out_dir)), sop_class_uid=str(ds.SOPClassUID),
                      sop_instance_uid=str(ds.SOPInstanceUID), series_instance_uid=str(ds.SeriesInstanceUID))


def overlay_frames(frames: Sequence[FrameMaps]) -> list[FrameMaps]:
    """Slices that cover a femoral head or neck, or carry oedema, in z order."""
    return [f for f in frames if np.isin(f.regions, HEAD_NECK_LABELS).any() or f.oedema.any()]


def key_frame(frames: Sequence[FrameMaps]) -> FrameMaps:
    """The slice with the most oedema (both sides), else the one with the most femoral head/neck."""
    oedema = [int((f.oedema > 0).sum()) for f in frames]
    if max(oedema, default=0) > 0:
        return frames[int(np.argmax(oedema))]
    anatomy = [int(np.isin(f.regions, HEAD_NECK_LABELS).sum()) for f in frames]
    return frames[int(np.argmax(anatomy))]


def _side_lines(result: AnalysisResult) -> list[str]:
    lines = []
    for side in SIDES:
        s = result.sides.get(side)
        if s is None or not s.localized or s.present is None:
            lines.append(f"{side.capitalize()}: not assessed")
        elif s.present and s.oedema_volume_ml is not None:
            lines.append(f"{side.capitalize()}: {fmt_ml(s.oedema_volume_ml)}")
        else:
            lines.append(f"{side.capitalize()}: none")
    return lines


def key_overlay_indices(result: AnalysisResult, shown: Sequence[FrameMaps]) -> list[int]:
    """Per hip with a reported finding, the overlay (index into ``shown``) where its oedema, else its
    effusion, is largest; right hip first, without repeats."""
    out: list[int] = []
    for name in SIDES:
        side = result.sides.get(name)
        if side is None or not (side.present or side.effusion):
            continue
        masks = [segment_mask(f, name, None) if side.present else effusion_mask(f, name) for f in shown]
        areas = [int(m.sum()) for m in masks]
        if max(areas, default=0) > 0 and (index := int(np.argmax(areas))) not in out:
            out.append(index)
    return out


def _source_image_name(fm: FrameMaps) -> str:
    """How a radiologist finds the source slice in the PACS: image number (or frame)."""
    if fm.frame.ref.frame_number is not None:
        return f"frame {fm.frame.ref.frame_number}"
    number = fm.frame.dataset.get("InstanceNumber")
    return f"image {number}" if number is not None else "image -"


def _display_spacing(pixels_width: int, frame: FrameMaps) -> tuple[float, float]:
    fused_width_mm = frame.frame.columns * frame.frame.spacing[1]
    px = fused_width_mm / (pixels_width - PANEL_WIDTH)  # the side panel is not part of the image
    return (round(px, 6), round(px, 6))


def _analysed(result: AnalysisResult, fluid: LoadedSeries, maps: AnalysisMaps, out_dir: Path,
              settings: Settings, source_datasets: Sequence[Dataset],
              prior_key_image: NDArray[np.uint8] | None = None) -> list[OutputFile]:
    reported = {SIDE_VALUE[name] for name, side in result.sides.items() if side.present}
    frames = keep_reported_oedema(sample_maps(fluid, maps), reported)
    ref = frames[0].frame.dataset
    version = result.algorithm.version
    inputs = [f.frame.ref.sop_instance_uid for f in frames] + [str(d.SOPInstanceUID) for d in source_datasets]
    uids = UidDeriver.for_inputs(settings.uid_prefix, str(ref.StudyInstanceUID), inputs, version)
    date, time = output_datetime(fluid.datasets)
    equipment = [contributing_equipment(version, settings.institution_name)]
    text = draft_findings(result)
    outputs: list[OutputFile] = []

    def emit(kind: str, ds: hd.SOPClass, name: str) -> None:
        finish_header(ds, ref, date, time, settings.institution_name, both_hips=True)
        outputs.append(_record(kind, ds, _write(ds, out_dir, name), out_dir))

    seg = build_seg(frames, result, uids, series_number=SERIES_NUMBERS["seg"], series_description=DESCRIPTIONS["seg"],
                    equipment=equipment)
    if seg is not None:
        emit("seg", seg.dataset, "seg.dcm")
    pmap = build_pmap(frames, result, uids, series_number=SERIES_NUMBERS["pmap"],
                      series_description=DESCRIPTIONS["pmap"], equipment=equipment)
    emit("pmap", pmap, "pmap.dcm")
    evidence = [*{str(f.frame.dataset.SOPInstanceUID): f.frame.dataset for f in frames}.values(), pmap,
                *([seg.dataset] if seg is not None else [])]
    sr = build_sr(result, frames, uids, evidence=evidence, findings_text=text, series_number=SERIES_NUMBERS["sr"],
                  series_description=DESCRIPTIONS["sr"], equipment=equipment)
    emit("sr", sr, "sr.dcm")
    scale = DisplayScale.for_frames(frames)
    lines = _side_lines(result)
    sequence = fluid_sequence_name(result)
    shown = overlay_frames(frames)
    key = key_frame(frames)
    key_fused = None  # the key slice is rendered once, for its overlay and the summary
    overlays = []
    for index, fm in enumerate(shown, start=1):
        caption = (f"{sequence} series {fluid.series_number or '-'} \u201c{clean_text(fluid.series_description, 64)}\u201d"
                   f"  |  {_source_image_name(fm)}  |  slice {fm.frame.z + 1}/{len(frames)}"
                   f"  |  overlay {index}/{len(shown)}")
        fused = fused_image(fm, scale)
        if fm is key:
            key_fused = fused
        pixels = overlay_frame(fm, fused, version=version, caption=caption, side_lines=lines, sequence=sequence)
        sc = build_sc(pixels, ref, series_uid=uids.uid("sc_overlay.series"),
                      instance_uid=uids.uid("sc_overlay.instance", index), series_number=SERIES_NUMBERS["sc_overlay"],
                      instance_number=index, series_description=DESCRIPTIONS["sc_overlay"], version=version,
                      orientation=patient_orientation(fm.frame),
                      pixel_spacing=_display_spacing(pixels.shape[1], fm), equipment=equipment,
                      sources=[fm.frame.ref], derivation=OVERLAY_DERIVATION.format(sequence=sequence))
        emit("sc_overlay", sc, f"sc_overlay_{index:02d}.dcm")
        overlays.append(sc)
    key_pixels = key_image(key, key_fused if key_fused is not None else fused_image(key, scale))
    # shown beside the next follow-up's; read back by this program only, so the fastest zlib level
    Image.fromarray(key_pixels, "RGB").save(out_dir / KEY_IMAGE_FILE, compress_level=1)
    summary = summary_image(with_comparison(summary_content(result, text), result),
                            comparison_key_image(result, key_pixels, prior_key_image))
    sc = build_sc(summary, ref, series_uid=uids.uid("sc_summary.series"), instance_uid=uids.uid("sc_summary.instance"),
                  series_number=SERIES_NUMBERS["sc_summary"], instance_number=1,
                  series_description=DESCRIPTIONS["sc_summary"], version=version, orientation=None,
                  pixel_spacing=None, equipment=equipment, sources=[key.frame.ref], derivation=SUMMARY_DERIVATION)
    emit("sc_summary", sc, "sc_summary.dcm")
    key_objects = [sc, *[overlays[i] for i in key_overlay_indices(result, shown)]]
    kos = build_kos(key_objects, result, uids, series_number=SERIES_NUMBERS["kos"],
                    series_description=DESCRIPTIONS["kos"], equipment=equipment)
    emit("kos", kos, "kos.dcm")
    return outputs


def _not_analysed(result: AnalysisResult, headers: Sequence[Dataset], out_dir: Path,
                  settings: Settings) -> list[OutputFile]:
    ref = headers[0]
    version = result.algorithm.version
    uids = UidDeriver.for_inputs(settings.uid_prefix, str(ref.StudyInstanceUID),
                                 [str(d.SOPInstanceUID) for d in headers], version)
    date, time = output_datetime(headers)
    equipment = [contributing_equipment(version, settings.institution_name)]
    text = draft_findings(result)
    outputs = []
    sr = build_sr(result, [], uids, evidence=headers, findings_text=text, series_number=SERIES_NUMBERS["sr"],
                  series_description=DESCRIPTIONS["sr"], equipment=equipment)
    summary = summary_image(summary_content(result, text), None)
    sc = build_sc(summary, ref, series_uid=uids.uid("sc_summary.series"), instance_uid=uids.uid("sc_summary.instance"),
                  series_number=SERIES_NUMBERS["sc_summary"], instance_number=1,
                  series_description=DESCRIPTIONS["sc_summary"], version=version, orientation=None,
                  pixel_spacing=None, equipment=equipment, derivation=SUMMARY_DERIVATION)
    kos = build_kos([sc], result, uids, series_number=SERIES_NUMBERS["kos"], series_description=DESCRIPTIONS["kos"],
                    equipment=equipment)
    for kind, ds, name in (("sr", sr, "sr.dcm"), ("sc_summary", sc, "sc_summary.dcm"), ("kos", kos, "kos.dcm")):
        finish_header(ds, ref, date, time, settings.institution_name, both_hips=False)
        outputs.append(_record(kind, ds, _write(ds, out_dir, name), out_dir))
    return outputs


def load_standard_tables() -> None:
    """Load highdicom's tables of the standard (SOP class -> IOD -> modules -> attributes) now.

    highdicom parses them (about 0.5 s of JSON) the first time an object is built. A worker calls
    this once at start, before its pool forks, so no study's outputs wait for it.
    """
    # private module: highdicom has no public way to preload its tables
    from highdicom import _standard_utils

    _standard_utils.get_sop_class_iod_map()
    _standard_utils.get_iod_module_map()
    _standard_utils.get_module_attribute_map()


def build_outputs(result: AnalysisResult, fluid: LoadedSeries | None, maps: AnalysisMaps | None, out_dir: Path,
                  *, settings: Settings, source_datasets: Sequence[Dataset] = (),
                  prior_key_image: NDArray[np.uint8] | None = None) -> list[OutputFile]:
    """Write the DICOM outputs of ``result`` under ``out_dir/dicom`` and return them (paths relative to out_dir).

    ``source_datasets``: further source headers of the study (e.g. the T1 series); they add to
    the UID derivation, and for a study that was not analysed they supply the patient/study modules.
    ``prior_key_image``: the prior study's key slice, shown beside this one on a follow-up's summary.
    """
    source_datasets = [with_type2_attributes(ds) for ds in with_valid_demographics(source_datasets)]
    if fluid is not None:
        fluid = dataclasses.replace(
            fluid, datasets=tuple(with_type2_attributes(ds) for ds in with_valid_demographics(fluid.datasets)))
    if result.status == "analyzed":
        if fluid is None or maps is None:
            raise OutputInputError("an analysed result needs the fluid-sensitive series and the analysis maps")
        if not fluid.datasets:
            raise OutputInputError("the fluid-sensitive series has no source headers")
        return _analysed(result, fluid, maps, Path(out_dir), settings, source_datasets, prior_key_image)
    headers = list(source_datasets) or (list(fluid.datasets) if fluid is not None else [])
    if not headers:
        return []
    return _not_analysed(result, headers, Path(out_dir), settings)
