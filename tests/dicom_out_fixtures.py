"""TEST FIXTURE for the DICOM-builder tests: a tiny hand-made coronal MR study.

Not product code. A few STIR-like slices written with pydicom, the matching
``LoadedSeries`` and hand-made ``AnalysisMaps`` / ``AnalysisResult`` with a lesion in
the LEFT femoral head (patient left = LPS +x). Used until / alongside the phantom
generator; the numbers in the result are computed from the fixture's own masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from workers.analysis.maps import AnalysisMaps
from workers.analysis.result import (
    REGION_LABELS,
    Algorithm,
    AnalysisResult,
    Quality,
    RegionMeasurement,
    SeriesReport,
    SeriesUsed,
    SideResult,
)
from workers.io.types import Classification, LoadedSeries, Plane, SeriesKind, SliceRef

ROWS, COLS, NZ = 64, 96, 10
ROW_SP, COL_SP, SLICE_SP = 3.0, 3.0, 4.0
COL_DIR = np.array([0.0, 0.0, -1.0])  # rows run to the feet


@dataclass(frozen=True)
class Grid:
    """Slice geometry. Default: columns run to patient left (image right = patient left)."""

    row_dir: np.ndarray
    origin: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, COL_DIR)


STANDARD = Grid(np.array([1.0, 0.0, 0.0]), np.array([-142.5, -18.0, 90.0]))
#: mirrored: columns run to patient RIGHT, so patient left is on the image's left
MIRRORED = Grid(np.array([-1.0, 0.0, 0.0]), np.array([142.5, 18.0, 90.0]))
HEAD_CENTRES = {"right": np.array([-75.0, 0.0, 0.0]), "left": np.array([75.0, 0.0, 0.0])}
HEAD_RADIUS = 22.0


@dataclass(frozen=True)
class FixtureStudy:
    fluid: LoadedSeries
    full_datasets: tuple[Dataset, ...]  # with PixelData, as a PACS would have them
    maps: AnalysisMaps
    result: AnalysisResult


def _lps_grid(g: Grid) -> np.ndarray:
    z, r, c = np.mgrid[0:NZ, 0:ROWS, 0:COLS].astype(np.float64)
    return np.asarray(g.origin + c[..., None] * COL_SP * g.row_dir + r[..., None] * ROW_SP * COL_DIR
                      + z[..., None] * SLICE_SP * g.normal, dtype=np.float64)


def _maps(g: Grid, lesion_sides: Sequence[str], effusion_sides: Sequence[str]) -> dict[str, np.ndarray]:
    p = _lps_grid(g)
    regions = np.zeros((NZ, ROWS, COLS), np.uint8)
    oedema = np.zeros_like(regions)
    effusion = np.zeros_like(regions)
    for side, centre in HEAD_CENTRES.items():
        d = p - centre
        dist = np.linalg.norm(d, axis=-1)
        head = dist <= HEAD_RADIUS
        lateral = np.sign(centre[0])  # +1 left, -1 right
        along = d[..., 0] * lateral  # mm lateral of the head centre
        neck = (~head) & (along > 0) & (along < 40) & (np.abs(d[..., 2] + along * 0.6) < 12) & (np.abs(d[..., 1]) < 14)
        itr = (along >= 40) & (along < 60) & (np.abs(d[..., 2] + 30) < 16) & (np.abs(d[..., 1]) < 16)
        regions[itr] = REGION_LABELS[(side, "intertrochanteric")]  # type: ignore[index]
        regions[neck] = REGION_LABELS[(side, "neck")]  # type: ignore[index]
        regions[head] = REGION_LABELS[(side, "head")]  # type: ignore[index]
        value = 1 if side == "right" else 2
        if side in lesion_sides:
            oedema[(head & (d[..., 2] > -6)) | (neck & (along < 20))] = value
        if side in effusion_sides:
            effusion[(dist > HEAD_RADIUS + 1) & (dist < HEAD_RADIUS + 4) & (d[..., 2] > 8)] = value
    gray = np.full(regions.shape, 80.0, np.float32)
    body = ((p[..., 0] / 150) ** 2 + ((p[..., 2] + 20) / 110) ** 2) < 1
    gray[body] = 300.0
    gray[regions > 0] = 140.0
    gray[oedema > 0] = 620.0
    gray[effusion > 0] = 900.0
    rng = np.random.default_rng(7)
    gray += rng.normal(0, 10, gray.shape).astype(np.float32)
    score = np.where(oedema > 0, 2.0 + (gray - 620.0) / 100.0, 0.0).astype(np.float32)
    score = np.clip(score, 0, None)
    score[oedema > 0] = np.maximum(score[oedema > 0], 0.5)
    return {"gray": np.clip(gray, 0, None), "regions": regions, "oedema": oedema,
            "effusion": effusion, "score": score}


def _image(array: np.ndarray, g: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetOrigin(tuple(float(v) for v in g.origin))  # type: ignore[no-untyped-call]
    img.SetSpacing((COL_SP, ROW_SP, SLICE_SP))  # type: ignore[no-untyped-call]
    img.SetDirection(tuple(float(v) for v in np.column_stack([g.row_dir, COL_DIR, g.normal]).ravel()))  # type: ignore[no-untyped-call]
    return img


def _datasets(g: Grid, gray: np.ndarray, charset: str, name: str, study_uid: str,
              series_uid: str) -> list[Dataset]:
    out = []
    for z in range(NZ):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SpecificCharacterSet = charset
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(z)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName = name
        ds.PatientID = "FIX-0001"
        ds.IssuerOfPatientID = "FIXTURE"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.PatientAge = "056Y"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate, ds.StudyTime = "20260315", "101500"
        ds.StudyID = "S7781"
        ds.AccessionNumber = "ACC-42"
        ds.ReferringPhysicianName = "Dr^Referrer"
        ds.StudyDescription = "MRI Hüfte beidseits" if charset != "ISO_IR 6" else "MRI hips"
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 5
        ds.SeriesDescription = "COR STIR"
        ds.SeriesDate, ds.SeriesTime = "20260315", "102000"
        ds.ContentDate, ds.ContentTime = "20260315", f"1021{z:02d}"
        ds.BodyPartExamined = "PELVIS"
        ds.PatientPosition = "FFS"
        ds.Manufacturer = "FixtureVendor"
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "for"])
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [float(v) for v in g.origin + z * SLICE_SP * g.normal]
        ds.ImageOrientationPatient = [*map(float, g.row_dir), *map(float, COL_DIR)]
        ds.PixelSpacing = [ROW_SP, COL_SP]
        ds.SliceThickness = SLICE_SP
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "IR", "SK", "", "2D"
        ds.RepetitionTime, ds.EchoTime, ds.InversionTime, ds.EchoTrainLength = 4000.0, 40.0, 160.0, 12
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = ROWS, COLS
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.round(gray[z]).astype(np.uint16).tobytes()
        out.append(ds)
    return out


def _measure(side: str, m: dict[str, np.ndarray], present: bool, pattern: str) -> SideResult:
    voxel_ml = ROW_SP * COL_SP * SLICE_SP / 1000.0
    value = 1 if side == "right" else 2
    oed = m["oedema"] == value
    regions = {}
    pcts = {}
    for region in ("head", "neck", "intertrochanteric"):
        reg = np.asarray(m["regions"] == REGION_LABELS[(side, region)], dtype=np.bool_)  # type: ignore[index]
        vol = float(reg.sum() * voxel_ml)
        ovol = float((reg & oed).sum() * voxel_ml)
        pct = 100.0 * ovol / vol if vol else 0.0
        pcts[region] = pct
        sel = m["gray"][reg & oed] / 140.0
        regions[region] = RegionMeasurement(
            region_volume_ml=vol, oedema_volume_ml=ovol, involvement_pct=pct,
            mean_signal_ratio=float(sel.mean()) if sel.size else None,
            p95_signal_ratio=float(np.percentile(sel, 95)) if sel.size else None,
            mean_t1_ratio=0.55 if sel.size else None)
    eff = m["effusion"] == value
    sel = m["gray"][oed] / 140.0
    z_counts = oed.sum(axis=(1, 2))
    return SideResult(
        side=side, localized=True, head_centre_lps_mm=tuple(HEAD_CENTRES[side]), head_radius_mm=HEAD_RADIUS,
        present=present, oedema_volume_ml=float(oed.sum() * voxel_ml),
        head_involvement_pct=pcts["head"], neck_involvement_pct=pcts["neck"],
        intertrochanteric_involvement_pct=pcts["intertrochanteric"], regions=regions,
        mean_signal_ratio=float(sel.mean()) if sel.size else None,
        p95_signal_ratio=float(np.percentile(sel, 95)) if sel.size else None,
        mean_t1_ratio=0.55 if sel.size else None,
        pattern=pattern, subchondral_low_signal_band=False, medial_head_sparing=False,
        effusion=bool(eff.any()), effusion_volume_ml=float(eff.sum() * voxel_ml),
        reference="contralateral femoral head" if not present else "ipsilateral femoral shaft",
        largest_slice_index=int(np.argmax(z_counts)) if present else None,
    )


def make_study(*, lesion_sides: Sequence[str] = ("left",), effusion_sides: Sequence[str] = ("left",),
               charset: str = "ISO_IR 192", name: str = "Müller^Jürgen", multiframe: bool = False,
               seed_uid: str = "fixture-1", grid: Grid = STANDARD) -> FixtureStudy:
    """The fixture study. ``multiframe`` converts the slices into one legacy-converted enhanced MR."""
    m = _maps(grid, lesion_sides, effusion_sides)
    study_uid = generate_uid(entropy_srcs=[seed_uid, "study"])
    series_uid = str(generate_uid(entropy_srcs=[seed_uid, "series"]))
    full = _datasets(grid, m["gray"], charset, name, study_uid, series_uid)
    if multiframe:
        enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
            legacy_datasets=full, series_instance_uid=generate_uid(entropy_srcs=[seed_uid, "mf-series"]),
            series_number=6, sop_instance_uid=generate_uid(entropy_srcs=[seed_uid, "mf"]), instance_number=1)
        full_ds: list[Dataset] = [enhanced]
        # the converter sorts frames its own way (here: reversed); map z -> frame by position
        ys = [float(f.PlanePositionSequence[0].ImagePositionPatient[1])
              for f in enhanced.PerFrameFunctionalGroupsSequence]
        frame_of_z = [ys.index(float(grid.origin[1] + z * SLICE_SP * grid.normal[1])) + 1 for z in range(NZ)]
        slices = tuple(SliceRef(enhanced.SOPClassUID, enhanced.SOPInstanceUID, f) for f in frame_of_z)
        series_uid = str(enhanced.SeriesInstanceUID)
    else:
        full_ds = full
        slices = tuple(SliceRef(ds.SOPClassUID, ds.SOPInstanceUID) for ds in full)
    headers = []
    for ds in full_ds:
        h = Dataset()
        h.update(ds)
        del h.PixelData
        headers.append(h)
    fluid = LoadedSeries(
        series_instance_uid=series_uid, image=_image(m["gray"].astype(np.float32), grid), slices=slices,
        datasets=tuple(headers), classification=Classification(SeriesKind.STIR, Plane.CORONAL, fat_suppressed=True),
        series_number=5, series_description="COR STIR")
    marrow = np.where(m["regions"] > 3, 2, np.where(m["regions"] > 0, 1, 0)).astype(np.uint8)
    maps = AnalysisMaps(score=_image(m["score"], grid), oedema=_image(m["oedema"], grid),
                        regions=_image(m["regions"], grid), effusion=_image(m["effusion"], grid),
                        marrow=_image(marrow, grid))
    sides = {}
    for side in ("right", "left"):
        present = side in lesion_sides
        pattern = ("diffuse" if present else "none")
        sides[side] = _measure(side, m, present, pattern)
    result = AnalysisResult(
        status="analyzed", study_instance_uid=study_uid,
        series_used=SeriesUsed(fluid_sensitive=series_uid),
        series=[SeriesReport(series_instance_uid=series_uid, series_number=5, series_description="COR STIR",
                             kind="stir", plane="coronal")],
        sides=sides,
        quality=Quality(statement="fixture", fat_suppression_ok=True),
        algorithm=Algorithm(version="0.1.0", parameters={"k_iqr": "1.5"}),
    )
    return FixtureStudy(fluid=fluid, full_datasets=tuple(full_ds), maps=maps, result=result)


# --- reading our SR back the way OHIF does -------------------------------------------------
Group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations


def read_report(path: Path) -> hd.sr.MeasurementReport:
    """The TID 1500 content of an SR file."""
    content = hd.sr.srread(path).content
    assert isinstance(content, hd.sr.MeasurementReport)
    return content


def laterality(group: Group) -> str:
    code = group.finding_sites[0].laterality
    assert code is not None
    return str(code.meaning)


def findings_by_tracking(report: hd.sr.MeasurementReport) -> dict[str, list[Group]]:
    """Measurement groups merged by tracking identifier, as OHIF merges them (by tracking UID)."""
    groups: list[Group] = [*report.get_planar_roi_measurement_groups(),
                           *report.get_volumetric_roi_measurement_groups()]
    by_uid: dict[str, list[Group]] = {}
    for g in groups:
        by_uid.setdefault(str(g.tracking_uid), []).append(g)
    merged: dict[str, list[Group]] = {}
    for members in by_uid.values():
        names = {str(g.tracking_identifier) for g in members}
        assert len(names) == 1, names  # one finding, one name
        merged[names.pop()] = members
    return merged


def values_of(groups: list[Group]) -> dict[str, float]:
    values: dict[str, float] = {}
    for g in groups:
        for m in g.get_measurements():
            assert m.name.meaning not in values, f"{m.name.meaning} twice in one finding"
            values[m.name.meaning] = float(m.value)
    return values


def values_by_site(group: Group) -> dict[tuple[str, str | None, str | None], float]:
    """Every number of a group by (concept meaning, finding site code, derivation meaning); each key once."""
    values: dict[tuple[str, str | None, str | None], float] = {}
    for m in group.get_measurements():
        site = str(m.finding_sites[0].value.value) if m.finding_sites else None
        derivation = m.derivation.meaning if m.derivation is not None else None
        key = (str(m.name.meaning), site, derivation)
        assert key not in values, f"{key} twice in one group"
        values[key] = float(m.value)
    return values


def sr_units(ds: Dataset) -> set[tuple[str, str]]:
    """(code value, scheme) of every unit of every NUM item under ``ds`` (an SR or one of its content items)."""
    units: set[tuple[str, str]] = set()
    stack = list(ds.get("ContentSequence", []))
    while stack:
        item = stack.pop()
        stack.extend(item.get("ContentSequence", []))
        if item.get("ValueType") == "NUM" and item.get("MeasuredValueSequence"):
            code = item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0]
            units.add((str(code.CodeValue), str(code.CodingSchemeDesignator)))
    return units


def evaluations_of(groups: list[Group]) -> dict[str, str]:
    return {str(q.name.meaning): str(getattr(q.value, "meaning", q.value))
            for g in groups for q in g.get_qualitative_evaluations()}
