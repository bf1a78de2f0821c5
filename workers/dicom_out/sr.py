"""The TID 1500 Measurement Report (Comprehensive 3D SR).

A finding is coded only when it was found, and each finding of a hip is one measurement
group (TID 1411, volumetric ROI), right hip first:

- the marrow of every assessed hip: "Edema" (SCT 79654002, finding site bone marrow and
  proximal femur, with laterality) when the result reports oedema, with its volume (mL),
  the extent in % of each analysed region (finding site on each number), the signal ratios
  and the pattern (only when the numbers support it); otherwise "No abnormality detected"
  (SCT 281900007) with "Edema: Absent" and no numbers;
- a joint effusion, when present: "Effusion" at the hip joint, volume (mL) and fluid-layer
  thickness (mm).

A hip that was not assessed has no group, only its reason (a TEXT in the Qualitative
Evaluations container). The group's region of interest is the finding's outline on every
source slice it covers (the slice where it is largest first); the tracking UID is shared
with the finding's SEG segment; the SEG and the Parametric Map of the oedema score are in the
document's evidence. Algorithm identification (TID 4019) is given once, at the document root.
The Qualitative Evaluations container (UMLS C0034375) also holds the processing summary
(DCM 111017: did the analysis run, did it find anything) and the draft findings text.

Why regions and not the SEG segment as the ROI: OHIF v3 merges groups by tracking UID,
shows only findings with a 2-D image region and crashes on a group without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from scipy import ndimage
from skimage.measure import find_contours

from marrowmap.markers import MANUFACTURER, MODEL_NAME
from workers.analysis.result import AnalysisResult, RegionName, Side, SideResult
from workers.dicom_out import codes
from workers.dicom_out.findings import supported_pattern
from workers.dicom_out.polygon import simplify
from workers.dicom_out.provenance import DEVICE_SERIAL_NUMBER
from workers.dicom_out.seg import (
    SIDES,
    effusion_mask,
    proximal_femur_mask,
    segment_mask,
    tracking_id,
    tracking_key,
)
from workers.dicom_out.sr_comparison import comparison_groups
from workers.dicom_out.stack import FrameMaps, bounding_box
from workers.dicom_out.uids import UidDeriver

#: connected pieces of a finding smaller than this (pixels on a slice) get no outline of their own
MIN_OUTLINE_PIXELS = 4
Group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations


class RegionOutlineError(ValueError):
    """No outline could be drawn for a finding (nothing to reference in the image)."""


def outline_polygon(mask: NDArray[np.bool_], offset: tuple[int, int] = (0, 0)) -> NDArray[np.float64]:
    """The outer outline of ``mask`` (its largest contour) as a closed polygon of (column, row) pixel coordinates.

    ``offset``: (row, column) of ``mask``'s first pixel in the image it was cut from.
    """
    padded = np.pad(mask.astype(np.float64), 1)
    contours = find_contours(padded, 0.5)  # type: ignore[no-untyped-call]
    if not contours:
        raise RegionOutlineError("empty mask")
    # (row, col) of pixel centres in the whole image, before simplifying (its result depends on them)
    contour = max(contours, key=len) - 1.0 + np.asarray(offset, dtype=np.float64)
    contour = simplify(contour, tolerance=0.4)
    points = np.column_stack([contour[:, 1] + 0.5, contour[:, 0] + 0.5])  # centre of pixel (0,0) = (0.5,0.5)
    if not np.array_equal(points[0], points[-1]):
        points = np.vstack([points, points[:1]])
    return points


def piece_outlines(mask: NDArray[np.bool_]) -> list[NDArray[np.float64]]:
    """One outline per connected piece of ``mask`` (pieces under ``MIN_OUTLINE_PIXELS`` skipped), largest first.

    The pieces are found within the mask's bounding box and each is outlined within its own: a
    finding covers a small part of the slice.
    """
    box = bounding_box(mask)
    if box is None:
        return []
    left, top, right, bottom = box
    labels, count = ndimage.label(mask[top:bottom, left:right])
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = ndimage.find_objects(labels)
    order = [int(i) + 1 for i in np.argsort(-sizes, kind="stable") if sizes[i] >= MIN_OUTLINE_PIXELS]
    outlines = []
    for k in order:
        rows, cols = boxes[k - 1]
        piece = np.asarray(labels[rows, cols] == k, dtype=np.bool_)
        outlines.append(outline_polygon(piece, (top + rows.start, left + cols.start)))
    return [p for p in outlines if len(p) >= 4]  # a closed polygon needs 3 distinct points


def _source_for_region(fm: FrameMaps) -> hd.sr.SourceImageForRegion:
    ref = fm.frame.ref
    frames = [ref.frame_number] if ref.frame_number is not None else None
    return hd.sr.SourceImageForRegion(ref.sop_class_uid, ref.sop_instance_uid, referenced_frame_numbers=frames)


@dataclass(frozen=True)
class Outline:
    """A finding's outlines on the source slices; ``key`` is the slice where the finding is largest."""

    regions: tuple[hd.sr.ImageRegion, ...]
    key: FrameMaps


def finding_outline(frames: Sequence[FrameMaps], masks: Sequence[NDArray[np.bool_]], what: str) -> Outline:
    """The outlines of a finding given its mask on each frame, slices by decreasing area (the key slice first)."""
    areas = [int(m.sum()) for m in masks]
    if max(areas, default=0) == 0:
        raise RegionOutlineError(f"no {what} voxels")
    order = sorted((i for i in range(len(frames)) if areas[i] > 0), key=lambda i: (-areas[i], i))
    key = order[0]
    regions = []
    for index in order:
        for polygon in piece_outlines(masks[index]):
            regions.append(hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=polygon,
                                             source_image=_source_for_region(frames[index])))
    if not regions:
        raise RegionOutlineError(f"{what}: every piece is smaller than {MIN_OUTLINE_PIXELS} pixels")
    return Outline(regions=tuple(regions), key=frames[key])


def marrow_masks(frames: Sequence[FrameMaps], side: SideResult) -> list[NDArray[np.bool_]]:
    """Per frame, the pixels of the hip's marrow finding: its oedema, or without oedema its analysed proximal femur."""
    if side.present:
        return [segment_mask(f, side.side, None) for f in frames]
    return [proximal_femur_mask(f, side.side) for f in frames]


def _site(site: hd.sr.CodedConcept, side: Side) -> hd.sr.FindingSite:
    return hd.sr.FindingSite(site, laterality=codes.laterality(side))


def _measure(name: hd.sr.CodedConcept, value: float | None, unit: hd.sr.CodedConcept, *,
             derivation: hd.sr.CodedConcept | None = None,
             site: tuple[RegionName, Side] | None = None) -> list[hd.sr.Measurement]:
    if value is None:
        return []
    sites = [_site(codes.region_site(site[0]), site[1])] if site is not None else None
    return [hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation, finding_sites=sites)]


def oedema_measurements(side: SideResult) -> list[hd.sr.Measurement]:
    """The oedema's volume, its extent in each region it involves (a region without oedema is not a
    finding site) and its signal ratios: values the analysis computed, in the order a viewer prints them."""
    extents: tuple[tuple[RegionName, float | None], ...] = (
        ("head", side.head_involvement_pct), ("neck", side.neck_involvement_pct),
        ("intertrochanteric", side.intertrochanteric_involvement_pct))
    return [
        *_measure(codes.volume(), side.oedema_volume_ml, codes.unit_ml()),
        *[m for region, pct in extents if pct
          for m in _measure(codes.extent(), pct, codes.unit_percent(), site=(region, side.side))],
        *_measure(codes.fluid_signal_ratio(), side.mean_signal_ratio, codes.unit_ratio(), derivation=codes.mean()),
        *_measure(codes.fluid_signal_ratio(), side.p95_signal_ratio, codes.unit_ratio(),
                  derivation=codes.percentile_95()),
        *_measure(codes.t1_signal_ratio(), side.mean_t1_ratio, codes.unit_ratio(), derivation=codes.mean()),
    ]


def oedema_evaluations(side: SideResult, result: AnalysisResult) -> list[hd.sr.QualitativeEvaluation]:
    out = []
    pattern = supported_pattern(side, result)
    if pattern is not None:
        out.append(hd.sr.QualitativeEvaluation(codes.pattern_concept(), codes.pattern_value(pattern)))
    if side.subchondral_low_signal_band is not None:
        out.append(hd.sr.QualitativeEvaluation(codes.subchondral_band(),
                                               codes.present(side.subchondral_low_signal_band)))
    return out


def _marrow_group(side: SideResult, result: AnalysisResult, frames: Sequence[FrameMaps],
                  uids: UidDeriver) -> tuple[Group, Outline]:
    outline = finding_outline(frames, marrow_masks(frames, side), f"{side.side} marrow")
    sites = [_site(codes.bone_marrow(), side.side), _site(codes.proximal_femur(), side.side)]
    if side.present:
        tracking = hd.sr.TrackingIdentifier(uid=uids.uid(tracking_key(side.side, "bme")),
                                            identifier=tracking_id(side.side, "bme"))
    else:
        tracking = hd.sr.TrackingIdentifier(uid=uids.uid(f"tracking.{side.side}.marrow"),
                                            identifier=f"{side.side.capitalize()} hip: no BME")
    if side.present:
        group = Group(tracking_identifier=tracking, referenced_regions=list(outline.regions),
                      finding_type=codes.edema(), finding_category=codes.abnormal_structure(), finding_sites=sites,
                      measurements=oedema_measurements(side) or None,
                      qualitative_evaluations=oedema_evaluations(side, result) or None)
    else:
        group = Group(tracking_identifier=tracking, referenced_regions=list(outline.regions),
                      finding_type=codes.no_abnormality(), finding_sites=sites,
                      qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.edema(), codes.present(False))])
    return group, outline


def _other_slice(outline: Outline) -> hd.sr.ImageRegion:
    """The finding's outline on its second-largest slice, for the hip's follow-up group: OHIF prints every
    finding's numbers at its outline, so two findings on one slice print over each other."""
    key_image = outline.regions[0].ContentSequence[0].ReferencedSOPSequence[0]
    for region in outline.regions[1:]:
        image = region.ContentSequence[0].ReferencedSOPSequence[0]
        if (image.ReferencedSOPInstanceUID, image.get("ReferencedFrameNumber")) != \
                (key_image.ReferencedSOPInstanceUID, key_image.get("ReferencedFrameNumber")):
            return region
    return outline.regions[0]


def _effusion_group(side: SideResult, frames: Sequence[FrameMaps], uids: UidDeriver) -> Group | None:
    masks = [effusion_mask(f, side.side) for f in frames]
    if not side.effusion or not any(m.any() for m in masks):
        return None
    outline = finding_outline(frames, masks, f"{side.side} effusion")
    measurements = [*_measure(codes.volume(), side.effusion_volume_ml, codes.unit_ml()),
                    *_measure(codes.effusion_thickness(), side.effusion_thickness_mm, codes.unit_mm())]
    return Group(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uids.uid(tracking_key(side.side, "effusion")),
                                                     identifier=tracking_id(side.side, "effusion")),
        referenced_regions=list(outline.regions), finding_type=codes.effusion(),
        finding_category=codes.abnormal_structure(), finding_sites=[_site(codes.hip_joint(), side.side)],
        measurements=measurements or None)


def assessed(side: SideResult | None) -> bool:
    """A hip with a result (oedema present or absent); not localised or withheld hips are not."""
    return side is not None and side.localized and side.present is not None


@dataclass
class _Groups:
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations | Group
                 | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]
    key_frames: list[FrameMaps]


def _finding_groups(result: AnalysisResult, frames: Sequence[FrameMaps], uids: UidDeriver) -> _Groups:
    out = _Groups(groups=[], key_frames=[])
    regions: dict[Side, hd.sr.ImageRegion] = {}
    for name in SIDES:
        side = result.sides.get(name)
        if side is None or not assessed(side):
            continue
        group, outline = _marrow_group(side, result, frames, uids)
        out.groups.append(group)
        out.key_frames.append(outline.key)
        regions[name] = _other_slice(outline)
        effusion = _effusion_group(side, frames, uids)
        if effusion is not None:
            out.groups.append(effusion)
    if result.comparison is not None:
        out.groups.extend(comparison_groups(result.comparison, result.study_date, regions, uids))
    return out


def _algorithm_items(result: AnalysisResult) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=result.algorithm.name, version=result.algorithm.version,
        parameters=[f"{k}={v}" for k, v in sorted(result.algorithm.parameters.items())] or None)


def _qualitative_evaluations(result: AnalysisResult, findings_text: str, any_finding: bool) -> hd.sr.ContainerContentItem:
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    sides = [result.sides.get(s) for s in SIDES]
    ran = result.status == "analyzed"
    summary = codes.processing_summary_value(ran=ran, all_assessed=all(assessed(s) for s in sides),
                                             findings=any_finding)
    items: list[hd.sr.ContentItem] = [hd.sr.CodeContentItem(name=codes.processing_summary(), value=summary,
                                                            relationship_type=contains)]
    for name in SIDES:
        side = result.sides.get(name)
        if ran and not assessed(side):
            reason = side.reason if side is not None and side.reason else "not analysed"
            items.append(hd.sr.TextContentItem(name=codes.not_assessed_reason(),
                                               value=f"{name.capitalize()} hip: {reason}"[:1024],
                                               relationship_type=contains))
    items.append(hd.sr.TextContentItem(name=codes.findings(), value=findings_text, relationship_type=contains))
    container = hd.sr.ContainerContentItem(name=codes.qualitative_evaluations(), relationship_type=contains)
    container.ContentSequence = items  # type: ignore[assignment]
    return container


def build_report(result: AnalysisResult, frames: Sequence[FrameMaps], uids: UidDeriver, findings_text: str) -> Dataset:
    """The TID 1500 content tree (root container)."""
    found = _finding_groups(result, frames, uids) if result.status == "analyzed" else _Groups([], [])
    observer = hd.sr.ObserverContext(
        observer_type=codes.device(),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uids.uid("sr.device"), name="MarrowMap", manufacturer_name=MANUFACTURER, model_name=MODEL_NAME,
            serial_number=DEVICE_SERIAL_NUMBER))
    root = hd.sr.ContainerContentItem(name=codes.report_title(), template_id="1500")
    content: list[Dataset] = [*hd.sr.LanguageOfContentItemAndDescendants(hd.sr.templates.DEFAULT_LANGUAGE),
                              *hd.sr.ObservationContext(observer_device_context=observer),
                              hd.sr.CodeContentItem(name=codes.procedure_reported_concept(),
                                                    value=codes.procedure_reported(),
                                                    relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD),
                              *_algorithm_items(result)]
    # the Image Library names the key image of each finding (some OHIF versions need one); highdicom
    # describes single-frame images only, so a multi-frame source goes without
    library = {str(fm.frame.dataset.SOPInstanceUID): fm.frame.dataset
               for fm in found.key_frames if fm.frame.ref.frame_number is None}
    if library:
        content.extend(hd.sr.ImageLibrary(list(library.values())))
    if found.groups:
        measurements = hd.sr.ContainerContentItem(name=codes.imaging_measurements(),
                                                  relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
        measurements.ContentSequence = [item for group in found.groups for item in group]  # type: ignore[assignment]
        content.append(measurements)
    any_finding = any(s.present or s.effusion for s in result.sides.values() if assessed(s))
    content.append(_qualitative_evaluations(result, findings_text, any_finding))
    root.ContentSequence = content  # type: ignore[assignment]
    return root


def build_sr(result: AnalysisResult, frames: Sequence[FrameMaps], uids: UidDeriver, *, evidence: Sequence[Dataset],
             findings_text: str, series_number: int, series_description: str,
             equipment: Sequence[hd.ContributingEquipment]) -> hd.sr.Comprehensive3DSR:
    """The SR document. ``evidence`` = the source headers and the objects derived with it (SEG, Parametric Map)."""
    report = build_report(result, frames, uids, findings_text)
    return hd.sr.Comprehensive3DSR(
        evidence=list(evidence), content=report, series_instance_uid=uids.uid("sr.series"),
        series_number=series_number, sop_instance_uid=uids.uid("sr.instance"), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME, software_versions=result.algorithm.version,
        series_description=series_description, is_complete=True, is_final=False, is_verified=False,
        coding_schemes=[codes.coding_scheme_item()], contributing_equipment=list(equipment))

