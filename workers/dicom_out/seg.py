"""The binary SEG: oedema per side and the femoral regions the measurements refer to.

Segments, in this order and only when they contain voxels: for the right then the
left hip, "<Side> hip BME" (the oedema mask of that side), then "<Side> femoral head",
"<Side> femoral neck" and "<Side> intertrochanteric region" (the analysed regions).
A study with no oedema still gets the region segments, so a viewer shows where the
algorithm looked; with no localised region at all there is nothing to segment and
no SEG is written. Frames reference the fluid-sensitive source images (or the frames
of a multi-frame source); empty frames are kept because some viewers mis-place
sparse SEGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from numpy.typing import NDArray

from workers.analysis.result import REGION_LABELS, AnalysisResult, RegionName, Side
from workers.dicom_out import codes
from workers.dicom_out.provenance import DEVICE_SERIAL_NUMBER, MANUFACTURER, MODEL_NAME
from workers.dicom_out.stack import FrameMaps
from workers.dicom_out.uids import UidDeriver

SIDES: tuple[Side, ...] = ("right", "left")
REGIONS: tuple[RegionName, ...] = ("head", "neck", "intertrochanteric")
SIDE_VALUE: dict[Side, int] = {"right": 1, "left": 2}
REGION_TEXT: dict[RegionName, str] = {
    "head": "femoral head", "neck": "femoral neck", "intertrochanteric": "intertrochanteric region",
}
#: display colours (RGB) shared by the SEG and the overlay outlines
REGION_RGB: dict[RegionName, tuple[int, int, int]] = {
    "head": (0, 220, 255), "neck": (60, 255, 60), "intertrochanteric": (190, 110, 255),
}
BME_RGB: dict[Side, tuple[int, int, int]] = {"right": (255, 60, 20), "left": (255, 170, 0)}


@dataclass(frozen=True)
class SegmentInfo:
    """One SEG segment and what it stands for."""

    number: int
    side: Side
    region: RegionName | None  # None: the side's oedema
    label: str
    tracking_id: str
    tracking_uid: str


@dataclass(frozen=True)
class BuiltSeg:
    dataset: hd.seg.Segmentation
    segments: tuple[SegmentInfo, ...]

    def segment(self, side: Side, region: RegionName | None) -> SegmentInfo | None:
        for seg in self.segments:
            if seg.side == side and seg.region == region:
                return seg
        return None


def segment_mask(frame: FrameMaps, side: Side, region: RegionName | None) -> NDArray[np.bool_]:
    """The pixels of one segment on one source frame."""
    if region is None:
        return np.asarray(frame.oedema == SIDE_VALUE[side], dtype=np.bool_)
    return np.asarray(frame.regions == REGION_LABELS[(side, region)], dtype=np.bool_)


def algorithm_identification(result: AnalysisResult) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=result.algorithm.name, family=codes.histogram_analysis(), version=result.algorithm.version,
        parameters=dict(result.algorithm.parameters) or None,
    )


def _description(info: SegmentInfo, result: AnalysisResult) -> hd.seg.SegmentDescription:
    if info.region is None:
        category, prop = codes.abnormal_structure(), codes.edema()
        site = codes.proximal_femur()
        site.AnatomicRegionModifierSequence = [codes.laterality(info.side)]
        colour = BME_RGB[info.side]
        anatomic = [site]
    else:
        category, prop = codes.anatomical_structure(), codes.region_site(info.region)
        prop.SegmentedPropertyTypeModifierCodeSequence = [codes.laterality(info.side)]
        colour = REGION_RGB[info.region]
        anatomic = None
    return hd.seg.SegmentDescription(
        segment_number=info.number, segment_label=info.label,
        segmented_property_category=category, segmented_property_type=prop,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(result),
        tracking_uid=info.tracking_uid, tracking_id=info.tracking_id,
        anatomic_regions=anatomic, display_color=hd.color.CIELabColor.from_rgb(*colour),
    )


def plan_segments(frames: list[FrameMaps], uids: UidDeriver) -> tuple[SegmentInfo, ...]:
    """The segments that contain voxels, numbered from 1."""
    wanted: list[tuple[Side, RegionName | None]] = []
    for side in SIDES:
        for region in (None, *REGIONS):
            if any(segment_mask(f, side, region).any() for f in frames):
                wanted.append((side, region))
    infos = []
    for number, (side, region) in enumerate(wanted, start=1):
        what = "hip BME" if region is None else REGION_TEXT[region]
        infos.append(SegmentInfo(
            number=number, side=side, region=region, label=f"{side.capitalize()} {what}",
            tracking_id=f"MarrowMap {side} {region or 'BME'}",
            tracking_uid=uids.uid(f"seg.tracking.{side}.{region or 'bme'}"),
        ))
    return tuple(infos)


def _pixel_array(frames: list[FrameMaps], infos: tuple[SegmentInfo, ...]) -> NDArray[np.uint8]:
    first = frames[0].frame
    multi = first.ref.frame_number is not None
    n_frames = int(first.dataset.get("NumberOfFrames", 1)) if multi else len(frames)
    array = np.zeros((n_frames, first.rows, first.columns, len(infos)), dtype=np.uint8)
    for z, fm in enumerate(frames):
        index = (fm.frame.ref.frame_number - 1) if fm.frame.ref.frame_number is not None else z
        for k, info in enumerate(infos):
            array[index, :, :, k] = segment_mask(fm, info.side, info.region)
    return array


def build_seg(frames: list[FrameMaps], result: AnalysisResult, uids: UidDeriver, *,
              series_number: int, series_description: str,
              equipment: Sequence[hd.ContributingEquipment]) -> BuiltSeg | None:
    """The SEG for one analysed study, or None when no segment has any voxel."""
    infos = plan_segments(frames, uids)
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
        content_description="BME and femoral regions, MarrowMap, not for diagnostic use",
        omit_empty_frames=False, contributing_equipment=list(equipment),
    )
    dimension_uid = uids.uid("seg.dimension-organization")  # highdicom draws a random one
    for item in [*seg.DimensionOrganizationSequence, *seg.DimensionIndexSequence]:
        item.DimensionOrganizationUID = dimension_uid
    return BuiltSeg(dataset=seg, segments=infos)
