"""The TID 1500 Measurement Report (Comprehensive 3D SR).

Each finding is one tracking UID (identifier and UID shared by its groups). Per hip
(right, then left):

- the side's oedema ("Left hip BME (head and neck)", or "Right hip: no BME detected"):
  a *planar* group (TID 1410) with a polygon on the fluid-sensitive source image where
  the oedema is largest (with no oedema: the outline of its analysed proximal femur where
  that is largest) and the qualitative evaluations (oedema, effusion, pattern, subchondral band);
  plus, when the SEG has the side's oedema segment, a *volumetric* group (TID 1411)
  referencing it, with the side totals (oedema volume, signal ratios, effusion volume).
  Without that segment the totals go in the planar group;
- each analysed region ("Left femoral head BME 71%"): a planar group with the region's
  outline (where its oedema is largest, on a slice no other finding of the hip is drawn on
  where possible: OHIF prints each finding's numbers at its outline's right edge, so two on
  one slice overlap) and oedema present/absent, and a volumetric group referencing the region's SEG
  segment with region volume, oedema volume in it, % involvement and signal ratios.

Why: OHIF v3 merges groups by tracking UID, shows only findings with a 2-D image region
(3.13 crashes on one without) and never prints laterality, so the side is in the
tracking identifier. A hip that could not be localised gets no group (nothing to outline;
a group without a region would break OHIF); the findings text says why.
The draft findings paragraph goes in a root "Qualitative Evaluations" container as a
TEXT item whose concept name says it is a machine-generated draft. When the analysis
did not run, the report has one TID 1501 group with the analysis status and the text
saying why. Observer = device (MarrowMap); algorithm name and version on every group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from skimage.measure import approximate_polygon, find_contours

from workers.analysis.result import AnalysisResult, RegionMeasurement, RegionName, Side, SideResult
from workers.dicom_out import codes
from workers.dicom_out.provenance import DEVICE_SERIAL_NUMBER, MANUFACTURER, MODEL_NAME
from workers.dicom_out.seg import REGION_TEXT, SIDES, BuiltSeg, segment_mask
from workers.dicom_out.sr_comparison import comparison_groups
from workers.dicom_out.stack import FrameMaps
from workers.dicom_out.uids import UidDeriver


class RegionOutlineError(ValueError):
    """No outline could be drawn for a side (nothing to reference in the image)."""


def outline_polygon(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """The largest outline of ``mask`` as a closed polygon of (column, row) DICOM pixel coordinates."""
    padded = np.pad(mask.astype(np.float64), 1)
    contours = find_contours(padded, 0.5)  # type: ignore[no-untyped-call]
    if not contours:
        raise RegionOutlineError("empty mask")
    contour = max(contours, key=len) - 1.0  # undo the padding; (row, col) of pixel centres
    contour = approximate_polygon(contour, tolerance=0.4)  # type: ignore[no-untyped-call]
    points = np.column_stack([contour[:, 1] + 0.5, contour[:, 0] + 0.5])  # centre of pixel (0,0) = (0.5,0.5)
    if not np.array_equal(points[0], points[-1]):
        points = np.vstack([points, points[:1]])
    return points


def _source_for_region(fm: FrameMaps) -> hd.sr.SourceImageForRegion:
    ref = fm.frame.ref
    frames = [ref.frame_number] if ref.frame_number is not None else None
    return hd.sr.SourceImageForRegion(ref.sop_class_uid, ref.sop_instance_uid, referenced_frame_numbers=frames)


def _largest(frames: list[FrameMaps], side: Side, region: RegionName | None, hint: int | None) -> FrameMaps:
    if hint is not None and 0 <= hint < len(frames) and segment_mask(frames[hint], side, region).any():
        return frames[hint]
    areas = [int(segment_mask(f, side, region).sum()) for f in frames]
    if max(areas, default=0) == 0:
        raise RegionOutlineError(f"no {region or 'oedema'} voxels on the {side} side")
    return frames[int(np.argmax(areas))]


def _proximal_femur(fm: FrameMaps, side: Side) -> NDArray[np.bool_]:
    """The side's analysed regions (head, neck, intertrochanteric) together on one frame."""
    masks = [segment_mask(fm, side, region) for region in ("head", "neck", "intertrochanteric")]
    return np.asarray(np.logical_or.reduce(masks), dtype=np.bool_)


def roi_frame(frames: list[FrameMaps], side: SideResult) -> FrameMaps:
    """The slice of the side's polygon: its oedema where largest, else its proximal femur where largest."""
    if side.present:
        return _largest(frames, side.side, None, side.largest_slice_index)
    areas = [int(_proximal_femur(f, side.side).sum()) for f in frames]
    if max(areas, default=0) == 0:
        raise RegionOutlineError(f"no proximal femur voxels on the {side.side} side")
    return frames[int(np.argmax(areas))]


def image_region(frames: list[FrameMaps], side: SideResult) -> hd.sr.ImageRegion:
    """The side's polygon: its oedema outline, or without oedema the outline of its analysed proximal femur.

    Not the femoral head alone: that is the head region's own polygon, and OHIF would print both
    findings' numbers on top of each other.
    """
    fm = roi_frame(frames, side)
    mask = _side_outline_mask(fm, side)
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                             graphic_data=outline_polygon(mask), source_image=_source_for_region(fm))


def _referenced_segment(seg: BuiltSeg, number: int, frames: list[FrameMaps]) -> hd.sr.ReferencedSegment:
    # built by hand: from_segmentation() fails on single-segment SEGs (DOMAIN 4.3 pitfall 1).
    # A stack of single-frame images is named by its series (one item instead of one per slice,
    # which kept the SR small and fast); a multi-frame source by its instance and frames.
    if all(fm.frame.ref.frame_number is None for fm in frames):
        series_uid = str(frames[0].frame.dataset.SeriesInstanceUID)
        return hd.sr.ReferencedSegment(sop_class_uid=seg.dataset.SOPClassUID,
                                       sop_instance_uid=seg.dataset.SOPInstanceUID, segment_number=number,
                                       source_series=hd.sr.SourceSeriesForSegmentation(series_uid))
    sources: dict[tuple[str, str], list[int]] = {}
    for fm in frames:
        ref = fm.frame.ref
        key = (ref.sop_class_uid, ref.sop_instance_uid)
        sources.setdefault(key, [])
        if ref.frame_number is not None:
            sources[key].append(ref.frame_number)
    images = [hd.sr.SourceImageForSegmentation(cls, uid, referenced_frame_numbers=sorted(nums) or None)
              for (cls, uid), nums in sources.items()]
    return hd.sr.ReferencedSegment(sop_class_uid=seg.dataset.SOPClassUID,
                                   sop_instance_uid=seg.dataset.SOPInstanceUID,
                                   segment_number=number, source_images=images)


def _site(site: hd.sr.CodedConcept, side: Side) -> hd.sr.FindingSite:
    return hd.sr.FindingSite(site, laterality=codes.laterality(side))


def _measure(name: hd.sr.CodedConcept, value: float | None, unit: hd.sr.CodedConcept,
             derivation: hd.sr.CodedConcept | None = None) -> list[hd.sr.Measurement]:
    if value is None:
        return []
    return [hd.sr.Measurement(name=name, value=float(value), unit=unit, derivation=derivation)]


def _ratio_measurements(mean: float | None, p95: float | None, t1: float | None) -> list[hd.sr.Measurement]:
    return [
        *_measure(codes.signal_ratio("mean"), mean, codes.unit_ratio(), codes.mean()),
        *_measure(codes.signal_ratio("p95"), p95, codes.unit_ratio()),
        *_measure(codes.t1_ratio(), t1, codes.unit_ratio(), codes.mean()),
    ]


def side_measurements(side: SideResult) -> list[hd.sr.Measurement]:
    """Side totals: oedema volume, signal ratios, effusion volume (only values the analysis computed)."""
    return [
        *_measure(codes.volume(), side.oedema_volume_ml, codes.unit_cm3()),
        *_ratio_measurements(side.mean_signal_ratio, side.p95_signal_ratio, side.mean_t1_ratio),
        *_measure(codes.effusion_volume(), side.effusion_volume_ml, codes.unit_cm3()),
    ]


def side_evaluations(side: SideResult) -> list[hd.sr.QualitativeEvaluation]:
    out = []
    if side.present is not None:
        out.append(hd.sr.QualitativeEvaluation(codes.edema(), codes.present(side.present)))
    if side.effusion is not None:
        out.append(hd.sr.QualitativeEvaluation(codes.effusion(), codes.present(side.effusion)))
    if side.pattern is not None:
        out.append(hd.sr.QualitativeEvaluation(codes.pattern_concept(), codes.pattern_value(side.pattern)))
    if side.subchondral_low_signal_band is not None:
        out.append(hd.sr.QualitativeEvaluation(codes.subchondral_band(),
                                               codes.present(side.subchondral_low_signal_band)))
    return out


def region_measurements(m: RegionMeasurement) -> list[hd.sr.Measurement]:
    return [
        *_measure(codes.volume(), m.region_volume_ml, codes.unit_cm3()),
        *_measure(codes.oedema_volume_in_region(), m.oedema_volume_ml, codes.unit_cm3()),
        *_measure(codes.involvement_pct(), m.involvement_pct, codes.unit_percent()),
        *_ratio_measurements(m.mean_signal_ratio, m.p95_signal_ratio, m.mean_t1_ratio),
    ]


def side_title(side: SideResult) -> str:
    """The side's label as a viewer prints it."""
    name = side.side.capitalize()
    if not side.localized:
        return f"{name} hip: not assessed"
    if side.present is None:
        return f"{name} hip: BME not assessed"
    if not side.present:
        return f"{name} hip: no BME detected"
    regions = [REGION_TEXT[r].replace("femoral ", "") for r in ("head", "neck", "intertrochanteric")
               if (side.regions.get(r) is not None and side.regions[r].oedema_volume_ml > 0)]
    where = " and ".join(regions) if regions else "proximal femur"
    return f"{name} hip BME ({where})"


def _tracking(uids: UidDeriver, key: str, label: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=uids.uid(f"sr.tracking.{key}"), identifier=label)


def _pick_slice(areas: list[tuple[int, int]], used: set[int], what: str) -> int:
    """The frame with the largest ``areas`` (compared in order; the last one must be > 0), preferring
    frames no other finding of the hip is drawn on (OHIF prints every finding's numbers at its
    outline's right edge, so two findings of one hip on one slice print on top of each other)."""
    ranked = sorted((i for i, a in enumerate(areas) if a[-1] > 0), key=lambda i: areas[i], reverse=True)
    if not ranked:
        raise RegionOutlineError(f"no {what} voxels")
    index = next((i for i in ranked if i not in used), ranked[0])
    used.add(index)
    return index


def _region_outline(frames: list[FrameMaps], side: Side, region: RegionName, used: set[int]) -> hd.sr.ImageRegion:
    """The region's outline where its oedema (else the region itself) is largest, on a slice of its own."""
    areas = []
    for f in frames:
        mask = segment_mask(f, side, region)
        areas.append((int((mask & segment_mask(f, side, None)).sum()), int(mask.sum())))
    fm = frames[_pick_slice(areas, used, f"{side} {region}")]
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                             graphic_data=outline_polygon(segment_mask(fm, side, region)),
                             source_image=_source_for_region(fm))


def _side_outline_mask(fm: FrameMaps, side: SideResult) -> NDArray[np.bool_]:
    return segment_mask(fm, side.side, None) if side.present else _proximal_femur(fm, side.side)


def comparison_outline(frames: list[FrameMaps], side: SideResult, used: set[int]) -> hd.sr.ImageRegion:
    """The side's outline (as for its own finding) for its follow-up comparison, on a slice of its own."""
    areas = [(0, int(_side_outline_mask(f, side).sum())) for f in frames]
    fm = frames[_pick_slice(areas, used, f"{side.side} outline")]
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                             graphic_data=outline_polygon(_side_outline_mask(fm, side)),
                             source_image=_source_for_region(fm))


def _side_groups(side: SideResult, frames: list[FrameMaps], seg: BuiltSeg | None, uids: UidDeriver,
                 algorithm: hd.sr.AlgorithmIdentification, used: set[int]) -> list[object]:
    """The groups of one localised hip.

    Every finding (the side's oedema, each region) is one tracking UID with a planar group
    (polygon, qualitative evaluations) and, when the SEG has its segment, a volumetric group
    (segment reference, measurements). OHIF merges groups by tracking UID and needs an image
    region in each merged finding (OHIF 3.13 crashes on a finding without one), so the numbers
    sit once in the volumetric group and the polygon in the planar one. ``used`` collects the
    frames (indices) the hip's polygons sit on, so that each finding gets a slice of its own
    where possible.
    """
    title = side_title(side)
    tracking = _tracking(uids, f"{side.side}.planar", title)
    fm = roi_frame(frames, side)
    used.add(next(i for i, f in enumerate(frames) if f is fm))
    site = _site(codes.proximal_femur(), side.side)
    bme = seg.segment(side.side, None) if seg is not None else None
    groups: list[object] = [hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, referenced_region=image_region(frames, side),
        finding_type=codes.edema(), finding_category=codes.abnormal_structure(), finding_sites=[site],
        algorithm_id=algorithm, measurements=(side_measurements(side) or None) if bme is None else None,
        qualitative_evaluations=side_evaluations(side) or None)]
    if seg is None:
        return groups
    if bme is not None:
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(uids, f"{side.side}.planar", title),
            referenced_segment=_referenced_segment(seg, bme.number, frames),
            finding_type=codes.edema(), finding_category=codes.abnormal_structure(),
            finding_sites=[_site(codes.proximal_femur(), side.side)], algorithm_id=algorithm,
            measurements=side_measurements(side) or None,
            qualitative_evaluations=side_evaluations(side) or None))
    for region_name, m in side.regions.items():
        info = seg.segment(side.side, region_name)
        if info is None:
            continue
        label = f"{side.side.capitalize()} {REGION_TEXT[region_name]} BME {m.involvement_pct:.0f}%"
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(uids, f"{side.side}.{region_name}", label),
            referenced_region=_region_outline(frames, side.side, region_name, used),
            finding_type=codes.edema(), finding_category=codes.abnormal_structure(),
            finding_sites=[_site(codes.region_site(region_name), side.side)], algorithm_id=algorithm,
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.edema(),
                                                                 codes.present(m.oedema_volume_ml > 0))]))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(uids, f"{side.side}.{region_name}", label),
            referenced_segment=_referenced_segment(seg, info.number, frames),
            finding_type=codes.edema(), finding_category=codes.abnormal_structure(),
            finding_sites=[_site(codes.region_site(region_name), side.side)], algorithm_id=algorithm,
            measurements=region_measurements(m),
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.edema(),
                                                                 codes.present(m.oedema_volume_ml > 0))]))
    return groups


def _not_analysed_group(result: AnalysisResult, uids: UidDeriver,
                        algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    status: Literal["failed", "not_applicable"] = "failed" if result.status == "failed" else "not_applicable"
    label = "MarrowMap: analysis failed" if status == "failed" else "MarrowMap: not applicable"
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(uids, "status", label), algorithm_id=algorithm,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.analysis_status_concept(),
                                                             codes.analysis_status_value(status))])


def _text_container(findings_text: str) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(name=codes.qualitative_evaluations(),
                                           relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = [hd.sr.TextContentItem(  # type: ignore[assignment]
        name=codes.draft_findings(), value=findings_text,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)]
    return container


def build_report(result: AnalysisResult, frames: list[FrameMaps], seg: BuiltSeg | None, uids: UidDeriver,
                 findings_text: str) -> hd.sr.MeasurementReport:
    """The TID 1500 content tree."""
    algorithm = hd.sr.AlgorithmIdentification(name=result.algorithm.name, version=result.algorithm.version,
                                              parameters=[f"{k}={v}" for k, v in sorted(result.algorithm.parameters.items())] or None)
    groups: list[object] = []
    if result.status == "analyzed":
        comparison_regions = {}
        for side_name in SIDES:
            side = result.sides.get(side_name)
            if side is not None and side.localized:
                used: set[int] = set()
                groups.extend(_side_groups(side, frames, seg, uids, algorithm, used))
                if result.comparison is not None:
                    comparison_regions[side_name] = comparison_outline(frames, side, used)
        if result.comparison is not None:
            groups.extend(comparison_groups(result.comparison, result.study_date, comparison_regions, uids,
                                            algorithm))
    if not groups:
        groups.append(_not_analysed_group(result, uids, algorithm))
    observer = hd.sr.ObserverContext(
        observer_type=codes.device(),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uids.uid("sr.device"), name="MarrowMap", manufacturer_name=MANUFACTURER, model_name=MODEL_NAME,
            serial_number=DEVICE_SERIAL_NUMBER))
    # an Image Library with the images the polygons sit on (some OHIF versions need one);
    # highdicom describes single-frame images only, so a multi-frame source goes without
    library = {}
    if result.status == "analyzed":
        for side in result.sides.values():
            fm = roi_frame(frames, side) if side.localized else None
            if fm is not None and fm.frame.ref.frame_number is None:
                library[str(fm.frame.dataset.SOPInstanceUID)] = fm.frame.dataset
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.procedure_reported(), imaging_measurements=groups,  # type: ignore[arg-type]
        title=codes.report_title(), referenced_images=list(library.values()) or None)
    report[0].ContentSequence.append(_text_container(findings_text))
    return report


def build_sr(result: AnalysisResult, frames: list[FrameMaps], seg: BuiltSeg | None, uids: UidDeriver, *,
             evidence: Sequence[Dataset], findings_text: str, series_number: int, series_description: str,
             equipment: Sequence[hd.ContributingEquipment]) -> hd.sr.Comprehensive3DSR:
    """The SR document. ``evidence`` = the source headers referenced (and the SEG)."""
    report = build_report(result, frames, seg, uids, findings_text)
    all_evidence = list(evidence) + ([seg.dataset] if seg is not None else [])
    return hd.sr.Comprehensive3DSR(
        evidence=all_evidence, content=report, series_instance_uid=uids.uid("sr.series"),
        series_number=series_number, sop_instance_uid=uids.uid("sr.instance"), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME, software_versions=result.algorithm.version,
        series_description=series_description, is_complete=True, is_final=False, is_verified=False,
        coding_schemes=[codes.coding_scheme_item()], contributing_equipment=list(equipment))
