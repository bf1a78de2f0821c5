"""The binary SEG: oedema and joint effusion per side, and the femoral regions the measurements refer to.

Segments, in this order and only when they contain voxels: for the right then the left hip,
"<Side> hip BME" (the oedema the result reports), "<Side> hip joint effusion" (when the result
reports one), then "<Side> femoral head", "<Side> femoral neck" and "<Side> intertrochanteric
region" (the analysed regions). Every segment has its own colour and the two sides never share
one; the side is in the label, in the anatomic region's modifier and (for the regions) in the
segmented property type's modifier. The oedema and effusion segments share their tracking UID
and identifier with the finding's group in the SR. A study with no oedema still gets the region
segments, so a viewer shows where the algorithm looked; with no localised region at all there is
nothing to segment and no SEG is written. Frames reference the fluid-sensitive source images
(or the frames of a multi-frame source); empty frames are kept because some viewers mis-place
sparse SEGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import highdicom as hd
import numpy as np
from numpy.typing import NDArray

from marrowmap.markers import MANUFACTURER, MODEL_NAME
from workers.analysis.result import REGION_LABELS, AnalysisResult, RegionName, Side
from workers.dicom_out import codes
from workers.dicom_out.provenance import DEVICE_SERIAL_NUMBER
from workers.dicom_out.stack import FrameMaps
from workers.dicom_out.uids import UidDeriver

SIDES: tuple[Side, ...] = ("right", "left")
REGIONS: tuple[RegionName, ...] = ("head", "neck", "intertrochanteric")
SIDE_VALUE: dict[Side, int] = {"right": 1, "left": 2}
REGION_TEXT: dict[RegionName, str] = {
    "head": "femoral head", "neck": "femoral neck", "intertrochanteric": "intertrochanteric region",
}
Part = RegionName | Literal["bme", "effusion"]
RGB = tuple[int, int, int]
#: display colours shared by the SEG segments and the overlay outlines; no colour is used on both sides
SEGMENT_RGB: dict[tuple[Side, Part], RGB] = {
    ("right", "bme"): (255, 60, 20), ("left", "bme"): (255, 170, 0),
    ("right", "head"): (0, 220, 255), ("left", "head"): (0, 110, 255),
    ("right", "neck"): (60, 255, 60), ("left", "neck"): (0, 160, 90),
    ("right", "intertrochanteric"): (190, 110, 255), ("left", "intertrochanteric"): (255, 110, 200),
    ("right", "effusion"): (120, 160, 255), ("left", "effusion"): (200, 200, 255),
}


def tracking_key(side: Side, part: Part) -> str:
    """UID derivation key of a finding's tracking UID (shared by its SEG segment and its SR group)."""
    return f"tracking.{side}.{part}"


def tracking_id(side: Side, part: Part) -> str:
    """The finding's tracking identifier, as a viewer prints it (OHIF never prints laterality)."""
    words = {"bme": "hip BME", "effusion": "hip joint effusion"}.get(part) or REGION_TEXT[part]  # type: ignore[index]
    return f"{side.capitalize()} {words}"


@dataclass(frozen=True)
class SegmentInfo:
    """One SEG segment and what it stands for."""

    number: int
    side: Side
    part: Part
    label: str
    tracking_id: str
    tracking_uid: str

    @property
    def region(self) -> RegionName | None:
        """The analysed region, or None for the oedema and effusion segments."""
        return None if self.part in ("bme", "effusion") else self.part  # type: ignore[return-value]


@dataclass(frozen=True)
class BuiltSeg:
    dataset: hd.seg.Segmentation
    segments: tuple[SegmentInfo, ...]

    def segment(self, side: Side, part: Part) -> SegmentInfo | None:
        for seg in self.segments:
            if seg.side == side and seg.part == part:
                return seg
        return None


def segment_mask(frame: FrameMaps, side: Side, region: RegionName | None) -> NDArray[np.bool_]:
    """The pixels of the side's oedema (``region`` None) or of one analysed region on one source frame."""
    if region is None:
        return np.asarray(frame.oedema == SIDE_VALUE[side], dtype=np.bool_)
    return np.asarray(frame.regions == REGION_LABELS[(side, region)], dtype=np.bool_)


def effusion_mask(frame: FrameMaps, side: Side) -> NDArray[np.bool_]:
    """The side's joint fluid on one source frame."""
    return np.asarray(frame.effusion == SIDE_VALUE[side], dtype=np.bool_)


def proximal_femur_mask(frame: FrameMaps, side: Side) -> NDArray[np.bool_]:
    """The side's analysed regions (head, neck, intertrochanteric) together on one frame."""
    return np.asarray(np.isin(frame.regions, [REGION_LABELS[(side, r)] for r in REGIONS]), dtype=np.bool_)


def part_mask(frame: FrameMaps, side: Side, part: Part) -> NDArray[np.bool_]:
    """The pixels of one segment on one source frame."""
    if part == "bme":
        return segment_mask(frame, side, None)
    if part == "effusion":
        return effusion_mask(frame, side)
    return segment_mask(frame, side, part)


def algorithm_identification(result: AnalysisResult) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=result.algorithm.name, family=codes.histogram_analysis(), version=result.algorithm.version,
        parameters=dict(result.algorithm.parameters) or None,
    )


def _with_side(concept: hd.sr.CodedConcept, side: Side) -> hd.sr.CodedConcept:
    concept.AnatomicRegionModifierSequence = [codes.laterality(side)]
    return concept


def _description(info: SegmentInfo, result: AnalysisResult) -> hd.seg.SegmentDescription:
    if info.part == "bme":
        category, prop, region = codes.abnormal_structure(), codes.edema(), codes.proximal_femur()
    elif info.part == "effusion":
        category, prop, region = codes.abnormal_structure(), codes.effusion(), codes.hip_joint()
    else:
        category, prop, region = codes.anatomical_structure(), codes.region_site(info.part), codes.region_site(info.part)
        prop.SegmentedPropertyTypeModifierCodeSequence = [codes.laterality(info.side)]
    return hd.seg.SegmentDescription(
        segment_number=info.number, segment_label=info.label,
        segmented_property_category=category, segmented_property_type=prop,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(result),
        tracking_uid=info.tracking_uid, tracking_id=info.tracking_id,
        anatomic_regions=[_with_side(region, info.side)],
        display_color=hd.color.CIELabColor.from_rgb(*SEGMENT_RGB[(info.side, info.part)]),
    )


def _reported(result: AnalysisResult, side: Side, part: Part) -> bool:
    """Oedema and effusion segments only for what the result reports (regions always)."""
    found = result.sides.get(side)
    if part == "bme":
        return bool(found is not None and found.present)
    if part == "effusion":
        return bool(found is not None and found.effusion)
    return True


def plan_segments(frames: list[FrameMaps], result: AnalysisResult, uids: UidDeriver) -> tuple[SegmentInfo, ...]:
    """The segments that contain voxels, numbered from 1."""
    parts: tuple[Part, ...] = ("bme", "effusion", *REGIONS)
    wanted: list[tuple[Side, Part]] = []
    for side in SIDES:
        for part in parts:
            if _reported(result, side, part) and any(part_mask(f, side, part).any() for f in frames):
                wanted.append((side, part))
    return tuple(
        SegmentInfo(number=number, side=side, part=part, label=tracking_id(side, part),
                    tracking_id=tracking_id(side, part), tracking_uid=uids.uid(tracking_key(side, part)))
        for number, (side, part) in enumerate(wanted, start=1))


def _pixel_array(frames: list[FrameMaps], infos: tuple[SegmentInfo, ...]) -> NDArray[np.uint8]:
    """(frames, rows, columns, segments), as highdicom takes it, but a view of a segment-major array:
    highdicom sums over the segments (overlap check) and reads one segment's frame at a time, both
    about five times faster when each segment's frame is contiguous."""
    first = frames[0].frame
    multi = first.ref.frame_number is not None
    n_frames = int(first.dataset.get("NumberOfFrames", 1)) if multi else len(frames)
    array = np.zeros((len(infos), n_frames, first.rows, first.columns), dtype=np.uint8)
    for z, fm in enumerate(frames):
        index = (fm.frame.ref.frame_number - 1) if fm.frame.ref.frame_number is not None else z
        for k, info in enumerate(infos):
            array[k, index] = part_mask(fm, info.side, info.part)
    return np.moveaxis(array, 0, -1)


def build_seg(frames: list[FrameMaps], result: AnalysisResult, uids: UidDeriver, *,
              series_number: int, series_description: str,
              equipment: Sequence[hd.ContributingEquipment]) -> BuiltSeg | None:
    """The SEG for one analysed study, or None when no segment has any voxel."""
    infos = plan_segments(frames, result, uids)
    if not infos:
        return None
    first = frames[0].frame
    if first.ref.frame_number is not None:
        sources = [first.dataset]
    else:
        sources = [fm.frame.dataset for fm in frames]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=_pixel_array(frames, infos),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(info, result) for info in infos],
        series_instance_uid=uids.uid("seg.series"), series_number=series_number,
        sop_instance_uid=uids.uid("seg.instance"), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        software_versions=result.algorithm.version, device_serial_number=DEVICE_SERIAL_NUMBER,
        series_description=series_description, content_label="BME",
        content_description="BME, effusion, femoral regions; not for diagnostic use",
        omit_empty_frames=False, contributing_equipment=list(equipment),
    )
    dimension_uid = uids.uid("seg.dimension-organization")  # highdicom draws a random one
    for item in [*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence]:
        item.DimensionOrganizationUID = dimension_uid
    return BuiltSeg(dataset=seg, segments=infos)
