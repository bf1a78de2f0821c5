"""DICOM outputs built from the hand-made fixture study: validity, content, geometry, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian

from marrowmap.markers import MANUFACTURER, MODEL_NAME, SERIES_NUMBERS
from marrowmap.settings import Settings
from tests.dicom_out_fixtures import (
    HEAD_CENTRES,
    HEAD_RADIUS,
    MIRRORED,
    FixtureStudy,
    evaluations_of,
    findings_by_tracking,
    laterality,
    make_study,
    read_report,
    sr_units,
    values_by_site,
)
from workers.analysis.result import AnalysisResult, OutputFile
from workers.dicom_out import build_outputs, draft_findings
from workers.dicom_out.build import key_overlay_indices, overlay_frames
from workers.dicom_out.geometry import edge_letters, source_frames
from workers.dicom_out.render import PANEL_WIDTH, overlay_image_box
from workers.dicom_out.seg import SEGMENT_RGB
from workers.dicom_out.stack import keep_reported_oedema, sample_maps

SETTINGS = Settings()


def _build(study: FixtureStudy, out: Path) -> list[OutputFile]:
    return build_outputs(study.result, study.fluid, study.maps, out, settings=SETTINGS)


@pytest.fixture(scope="module")
def standard(tmp_path_factory: pytest.TempPathFactory) -> tuple[FixtureStudy, Path, list[OutputFile]]:
    study = make_study(charset="ISO_IR 192", name="Müller^Jürgen=ミュラー^ユルゲン")
    out = tmp_path_factory.mktemp("standard")
    return study, out, _build(study, out)


@pytest.fixture(scope="module")
def multiframe(tmp_path_factory: pytest.TempPathFactory) -> tuple[FixtureStudy, Path, list[OutputFile]]:
    study = make_study(multiframe=True, charset="ISO_IR 100", name="Åström^Zoë", seed_uid="fixture-mf")
    out = tmp_path_factory.mktemp("multiframe")
    return study, out, _build(study, out)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> tuple[FixtureStudy, Path, list[OutputFile]]:
    study = make_study(grid=MIRRORED, seed_uid="fixture-mirrored")
    out = tmp_path_factory.mktemp("mirrored")
    return study, out, _build(study, out)


@pytest.fixture(scope="module")
def normal(tmp_path_factory: pytest.TempPathFactory) -> tuple[FixtureStudy, Path, list[OutputFile]]:
    study = make_study(lesion_sides=(), effusion_sides=(), seed_uid="fixture-normal")
    out = tmp_path_factory.mktemp("normal")
    return study, out, _build(study, out)


def dciodvfy_errors(path: Path) -> list[str]:
    proc = subprocess.run(["dciodvfy", "-filename", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def _kinds(outputs: list[OutputFile]) -> dict[str, list[OutputFile]]:
    kinds: dict[str, list[OutputFile]] = {}
    for o in outputs:
        kinds.setdefault(o.kind, []).append(o)
    return kinds


def _path(out: Path, outputs: list[OutputFile], kind: str) -> Path:
    return out / next(o.path for o in outputs if o.kind == kind)


ALL_KINDS = {"seg", "sr", "sc_overlay", "sc_summary", "pmap", "kos"}


@pytest.mark.parametrize("case", ["standard", "multiframe", "mirrored", "normal"])
def test_every_output_passes_dciodvfy(case: str, request: pytest.FixtureRequest) -> None:
    _, out, outputs = request.getfixturevalue(case)
    kinds = _kinds(outputs)
    assert set(kinds) == ALL_KINDS
    # overlays share one code path: the first and the last stand for the series (dciodvfy takes ~1 s a file)
    checked = [o for o in outputs if o.kind != "sc_overlay"] + [kinds["sc_overlay"][0], kinds["sc_overlay"][-1]]
    for o in checked:
        assert dciodvfy_errors(out / o.path) == [], o.path


def test_dsrdump_reads_the_sr(standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    _, out, outputs = standard
    proc = subprocess.run(["dsrdump", str(_path(out, outputs, "sr"))], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Left hip BME" in proc.stdout and "Right hip: no BME" in proc.stdout


def test_series_study_and_patient_modules(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                          multiframe: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    for study, out, outputs in (standard, multiframe):
        src = study.full_datasets[0]
        for o in outputs:
            ds = pydicom.dcmread(out / o.path)
            assert ds.SOPInstanceUID == o.sop_instance_uid and ds.SeriesInstanceUID == o.series_instance_uid
            assert ds.SeriesNumber == SERIES_NUMBERS[o.kind]
            assert "NOT FOR DIAGNOSTIC USE" in ds.SeriesDescription
            for kw in ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                       "PatientSex", "PatientAge", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                       "AccessionNumber", "ReferringPhysicianName", "StudyDescription"):
                assert ds.get(kw) == src.get(kw), (o.path, kw)
            # the markers the listener's routing recognises (never analysed again)
            assert ds.Manufacturer == MANUFACTURER and ds.ManufacturerModelName == MODEL_NAME, o.kind
            assert ds.SoftwareVersions == "0.1.0"
            assert "MarrowMap" in [item.Manufacturer for item in ds.ContributingEquipmentSequence]
            if "ImageType" in ds:
                assert ds.ImageType[0] == "DERIVED", o.kind
            assert ds.ContentDate == "20260315"  # from the source, not the wall clock
        # non-ASCII names survive byte-exactly in the file's declared character set
        names = {str(pydicom.dcmread(out / o.path).PatientName) for o in outputs}
        assert names == {str(src.PatientName)}


def test_non_ascii_names_are_not_mangled(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                         multiframe: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    assert str(pydicom.dcmread(standard[1] / standard[2][0].path).PatientName) == "Müller^Jürgen=ミュラー^ユルゲン"
    mf = pydicom.dcmread(multiframe[1] / multiframe[2][0].path)
    assert mf.SpecificCharacterSet == "ISO_IR 100" and str(mf.PatientName) == "Åström^Zoë"


def test_secondary_captures_reference_their_source_slice(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                                         multiframe: tuple[FixtureStudy, Path, list[OutputFile]]
                                                         ) -> None:
    for study, out, outputs in (standard, multiframe):
        shown = overlay_frames(sample_maps(study.fluid, study.maps))
        overlays = [o for o in outputs if o.kind == "sc_overlay"]
        assert len(overlays) == len(shown)
        for o, fm in zip(overlays, shown, strict=True):
            ds = pydicom.dcmread(out / o.path)
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated, ds.PlanarConfiguration) == \
                ("RGB", 3, 8, 0)
            assert ds.Modality == "MR" and ds.BurnedInAnnotation == "YES"
            assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
            [source] = ds.SourceImageSequence
            assert source.ReferencedSOPInstanceUID == fm.frame.ref.sop_instance_uid
            assert source.get("ReferencedFrameNumber") == fm.frame.ref.frame_number
            assert source.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        assert [pydicom.dcmread(out / o.path).InstanceNumber for o in overlays] == list(range(1, len(overlays) + 1))
        summary = pydicom.dcmread(_path(out, outputs, "sc_summary"))
        assert len(summary.SourceImageSequence) == 1


def test_seg_reads_back_and_matches_the_maps(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                             multiframe: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    for study, out, outputs in (standard, multiframe):
        seg = hd.seg.segread(_path(out, outputs, "seg"))
        labels = [seg.get_segment_description(n).segment_label for n in seg.segment_numbers]
        assert labels == ["Right femoral head", "Right femoral neck", "Right intertrochanteric region",
                          "Left hip BME", "Left hip joint effusion", "Left femoral head", "Left femoral neck",
                          "Left intertrochanteric region"]
        bme = labels.index("Left hip BME") + 1
        desc = seg.get_segment_description(bme)
        assert desc.segmented_property_type.value == "79654002"
        algorithm = desc.algorithm_identification
        assert algorithm is not None and algorithm[0].AlgorithmName == study.result.algorithm.name
        frames = source_frames(study.fluid)
        oedema = sitk.GetArrayFromImage(study.maps.oedema)
        for z, frame in enumerate(frames):
            if frame.ref.frame_number is None:
                pixels = seg.get_pixels_by_source_instance(
                    source_sop_instance_uids=[frame.ref.sop_instance_uid], segment_numbers=[bme])[0, :, :, 0]
            else:
                pixels = seg.get_pixels_by_source_frame(
                    source_sop_instance_uid=frame.ref.sop_instance_uid, source_frame_numbers=[frame.ref.frame_number],
                    segment_numbers=[bme])[0, :, :, 0]
            np.testing.assert_array_equal(pixels > 0, oedema[z] == 2)


def test_seg_colours_differ_per_side_and_laterality_is_in_the_anatomic_region(
        standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    _, out, outputs = standard
    seg = pydicom.dcmread(_path(out, outputs, "seg"))
    colours: dict[str, set[tuple[int, ...]]] = {"Right": set(), "Left": set()}
    for item in seg.SegmentSequence:
        side = str(item.SegmentLabel).split()[0]
        colours[side].add(tuple(int(v) for v in item.RecommendedDisplayCIELabValue))
        [region] = item.AnatomicRegionSequence
        assert region.AnatomicRegionModifierSequence[0].CodeMeaning == side, item.SegmentLabel
    assert len(colours["Right"]) == 3 and len(colours["Left"]) == 5  # one colour per segment
    assert not colours["Right"] & colours["Left"]
    assert not {v for k, v in SEGMENT_RGB.items() if k[0] == "right"} & \
        {v for k, v in SEGMENT_RGB.items() if k[0] == "left"}


def test_one_group_per_hip_finding_each_with_its_outline(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                                        normal: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    """OHIF shows (and 3.13 only survives) groups that carry a 2-D SCOORD; one group per finding."""
    expected = {"standard": ["Right hip: no BME", "Left hip BME", "Left hip joint effusion"],
                "normal": ["Right hip: no BME", "Left hip: no BME"]}
    for name, (_, out, outputs) in (("standard", standard), ("normal", normal)):
        sr = read_report(_path(out, outputs, "sr"))
        groups = sr.get_volumetric_roi_measurement_groups()
        assert [str(g.tracking_identifier) for g in groups] == expected[name]
        assert sr.get_planar_roi_measurement_groups() == [] and sr.get_image_measurement_groups() == []
        assert len({str(g.tracking_uid) for g in groups}) == len(groups)  # one tracking UID per finding
        for g in groups:
            assert g.roi, g.tracking_identifier  # image regions on the source slices


def test_no_edema_finding_for_a_normal_hip(normal: tuple[FixtureStudy, Path, list[OutputFile]],
                                           standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    for _, out, outputs in (normal, standard):
        sr = read_report(_path(out, outputs, "sr"))
        for g in sr.get_volumetric_roi_measurement_groups():
            edema = g.finding_type is not None and g.finding_type.value == "79654002"
            assert edema == (str(g.tracking_identifier) == "Left hip BME"), g.tracking_identifier
            if str(g.tracking_identifier).endswith("no BME"):
                assert g.finding_type is not None and g.finding_type.value == "281900007"
                assert evaluations_of([g]) == {"Edema": "Absent"} and g.get_measurements() == []
    seg = hd.seg.segread(_path(normal[1], normal[2], "seg"))
    labels = [seg.get_segment_description(n).segment_label for n in seg.segment_numbers]
    assert not any("BME" in label for label in labels) and "Left femoral head" in labels


def test_sr_measurements_equal_result_json(standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    study, out, outputs = standard
    (out / "result.json").write_text(study.result.model_dump_json())
    result = AnalysisResult.model_validate_json((out / "result.json").read_text())
    sr = read_report(_path(out, outputs, "sr"))
    findings = findings_by_tracking(sr)
    left = result.sides["left"]
    [bme] = findings["Left hip BME"]
    assert laterality(bme) == "Left" and [s.value.value for s in bme.finding_sites] == ["14016003", "310651003"]
    values = values_by_site(bme)
    assert values[("Volume", None, None)] == pytest.approx(left.oedema_volume_ml, rel=1e-12)
    assert values[("Extent", "2812003", None)] == pytest.approx(left.head_involvement_pct, rel=1e-12)
    assert values[("Extent", "29627003", None)] == pytest.approx(left.neck_involvement_pct, rel=1e-12)
    assert left.intertrochanteric_involvement_pct == 0.0 and ("Extent", "ITROCH", None) not in values  # not involved
    ratio = "Fluid-sensitive signal ratio to reference marrow"
    assert values[(ratio, None, "Mean")] == pytest.approx(left.mean_signal_ratio, rel=1e-12)
    assert values[(ratio, None, "95th Percentile Value of population")] == \
        pytest.approx(left.p95_signal_ratio, rel=1e-12)
    assert values[("T1 signal ratio to reference marrow", None, "Mean")] == pytest.approx(left.mean_t1_ratio)
    assert len(values) == 6  # nothing else: no region volumes, no bare "Volume" of a region
    assert evaluations_of([bme]) == {"Finding category": "Morphologically Abnormal Structure",
                                     "Bone marrow oedema pattern": "Diffuse", "Subchondral low-signal band": "Absent"}
    [effusion] = findings["Left hip joint effusion"]
    assert effusion.finding_type is not None and effusion.finding_type.value == "41699000"
    assert values_by_site(effusion) == {("Volume", None, None): pytest.approx(left.effusion_volume_ml, rel=1e-12)}
    # the draft findings paragraph and the processing summary are in the Qualitative Evaluations container
    container = sr[0].ContentSequence[-1]
    assert container.ConceptNameCodeSequence[0].CodeValue == "C0034375"
    texts = {i.ConceptNameCodeSequence[0].CodeMeaning: i.get("TextValue") for i in container.ContentSequence}
    assert texts["Findings"] == draft_findings(result)
    [summary] = [i for i in container.ContentSequence if i.ValueType == "CODE"]
    assert summary.ConceptCodeSequence[0].CodeValue == "111242"  # all algorithms succeeded; with findings


def test_sr_units_are_ucum_ml_percent_and_one(standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    _, out, outputs = standard
    measurements = next(i for i in pydicom.dcmread(_path(out, outputs, "sr")).ContentSequence
                        if i.ConceptNameCodeSequence[0].CodeValue == "126010")  # Imaging Measurements
    units = sr_units(measurements)
    assert units and units <= {("mL", "UCUM"), ("%", "UCUM"), ("1", "UCUM"), ("mm", "UCUM")}
    assert ("mL", "UCUM") in units and ("1", "UCUM") in units and ("%", "UCUM") in units


def test_sr_names_the_procedure_and_the_algorithm_once(standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    _, out, outputs = standard
    sr = pydicom.dcmread(_path(out, outputs, "sr"))
    root = sr.ContentSequence
    [procedure] = [i for i in root if i.ConceptNameCodeSequence[0].CodeValue == "121058"]
    assert procedure.ConceptCodeSequence[0].CodeValue == "241639000"
    names = [i for i in _walk(root) if i.ConceptNameCodeSequence[0].CodeValue == "111001"]  # Algorithm Name
    assert len(names) == 1 and names[0] in list(root)


def _walk(items: pydicom.Sequence) -> list[pydicom.Dataset]:
    out = []
    for item in items:
        out.append(item)
        out.extend(_walk(item.get("ContentSequence", [])))
    return out


def test_sr_outline_starts_on_the_largest_oedema_slice(standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    study, out, outputs = standard
    sr = read_report(_path(out, outputs, "sr"))
    group = next(g for g in sr.get_volumetric_roi_measurement_groups() if g.tracking_identifier == "Left hip BME")
    regions = group.roi
    assert regions and all(r.graphic_type == hd.sr.GraphicTypeValues.POLYLINE for r in regions)
    first = regions[0]
    points = first.value
    np.testing.assert_array_equal(points[0], points[-1])  # closed
    ref_uid = first.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    z = study.result.sides["left"].largest_slice_index
    assert z is not None and ref_uid == study.fluid.slices[z].sop_instance_uid
    # every slice with left oedema has an outline
    oedema = sitk.GetArrayFromImage(study.maps.oedema) == 2
    slices = {r.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID for r in regions}
    assert slices == {study.fluid.slices[k].sop_instance_uid for k in range(len(oedema)) if oedema[k].any()}
    frame = source_frames(study.fluid)[z]
    # polygon centroid lies in the left femoral head (LPS +x)
    col, row = points[:, 0].mean() - 0.5, points[:, 1].mean() - 0.5
    lps = frame.position + col * frame.spacing[1] * frame.row_dir + row * frame.spacing[0] * frame.col_dir
    assert lps[0] > 0
    assert np.linalg.norm(lps[[0, 2]] - HEAD_CENTRES["left"][[0, 2]]) < HEAD_RADIUS
    seg = hd.seg.segread(_path(out, outputs, "seg"))
    shared = [seg.get_segment_description(n) for n in seg.segment_numbers
              if seg.get_segment_description(n).segment_label == "Left hip BME"]
    assert str(shared[0].tracking_uid) == str(group.tracking_uid)  # the SR finding is the SEG segment


def test_parametric_map_holds_the_score_on_each_source_frame(
        standard: tuple[FixtureStudy, Path, list[OutputFile]],
        multiframe: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    for study, out, outputs in (standard, multiframe):
        pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(_path(out, outputs, "pmap")))
        assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and "FloatPixelData" in pm
        mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "1"
        assert (mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept) == (1.0, 0.0)
        assert pm.ReferencedSeriesSequence[0].SeriesInstanceUID == study.fluid.series_instance_uid
        frames = keep_reported_oedema(sample_maps(study.fluid, study.maps), {2})
        sources = {(str(s.ReferencedSOPInstanceUID), s.get("ReferencedFrameNumber"))
                   for item in pm.PerFrameFunctionalGroupsSequence
                   for s in item.DerivationImageSequence[0].SourceImageSequence}
        assert sources == {(fm.frame.ref.sop_instance_uid, fm.frame.ref.frame_number) for fm in frames}
        for fm in frames:
            if fm.frame.ref.frame_number is None:
                values = pm.get_pixels_by_source_instance(source_sop_instance_uids=[fm.frame.ref.sop_instance_uid])
            else:
                values = pm.get_pixels_by_source_frame(source_sop_instance_uid=fm.frame.ref.sop_instance_uid,
                                                       source_frame_numbers=[fm.frame.ref.frame_number])
            np.testing.assert_allclose(values[0, :, :, 0] if values.ndim == 4 else values[0], fm.score, rtol=1e-6)


def test_kos_flags_the_summary_and_each_findings_key_overlay(
        standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    study, out, outputs = standard
    kos = pydicom.dcmread(_path(out, outputs, "kos"))
    assert kos.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"
    assert kos.ConceptNameCodeSequence[0].CodeValue == "113000"  # Of Interest
    flagged = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in kos.ContentSequence
               if i.ValueType == "IMAGE"]
    overlays = [o for o in outputs if o.kind == "sc_overlay"]
    shown = overlay_frames(keep_reported_oedema(sample_maps(study.fluid, study.maps), {2}))
    keys = key_overlay_indices(study.result, shown)
    assert flagged == [next(o.sop_instance_uid for o in outputs if o.kind == "sc_summary"),
                       *[overlays[i].sop_instance_uid for i in keys]]
    assert [shown[i].frame.z for i in keys] == [study.result.sides["left"].largest_slice_index]


def _render(path: Path, tmp: Path) -> np.ndarray:
    png = tmp / (path.stem + ".png")
    subprocess.run(["dcmj2pnm", "--write-png", str(path), str(png)], check=True, timeout=60, capture_output=True)
    return np.asarray(Image.open(png).convert("RGB")).astype(np.int32)


def _oedema_colour(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the yellow-red oedema colour map (grey, outlines and text are excluded)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.asarray((r > 100) & (r - b > 60) & (r >= g), dtype=np.bool_)


@pytest.mark.parametrize("case", ["standard", "mirrored"])
def test_overlay_colour_sits_on_the_left_hip(case: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    study, out, outputs = request.getfixturevalue(case)
    frames = source_frames(study.fluid)
    z = study.result.sides["left"].largest_slice_index
    overlays = [o for o in outputs if o.kind == "sc_overlay"]
    shown = overlay_frames(sample_maps(study.fluid, study.maps))  # the slices that got an overlay, in order
    index = [f.frame.z for f in shown].index(z)
    rgb = _render(out / overlays[index].path, tmp_path)
    frame = frames[z]
    left, top, width, height = overlay_image_box(shown[index])
    assert rgb.shape[1] == width + PANEL_WIDTH
    image = rgb[top:top + height, left:left + width]
    colour = _oedema_colour(image)
    half = width // 2
    left_on_image_right = edge_letters(frame)["right"].startswith("L")
    assert left_on_image_right == (case == "standard")
    patient_left = colour[:, half:] if left_on_image_right else colour[:, :half]
    patient_right = colour[:, :half] if left_on_image_right else colour[:, half:]
    assert patient_left.sum() > 200
    assert patient_right.sum() == 0
    # and inside the left femoral head
    rows, cols = np.nonzero(colour)
    scale = width / (frame.columns * frame.spacing[1])  # display px per mm
    col_mm, row_mm = cols.mean() / scale, rows.mean() / scale
    lps = frame.position + col_mm * frame.row_dir + row_mm * frame.col_dir
    assert np.linalg.norm(lps[[0, 2]] - HEAD_CENTRES["left"][[0, 2]]) < HEAD_RADIUS


def test_same_input_same_uids_and_bytes(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                        tmp_path: Path) -> None:
    study, out, outputs = standard
    again = _build(study, tmp_path)
    assert [o.sop_instance_uid for o in again] == [o.sop_instance_uid for o in outputs]
    assert [o.series_instance_uid for o in again] == [o.series_instance_uid for o in outputs]
    for a, b in zip(outputs, again, strict=True):
        assert (out / a.path).read_bytes() == (tmp_path / b.path).read_bytes(), a.path


def test_different_input_different_uids(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                        mirrored: tuple[FixtureStudy, Path, list[OutputFile]],
                                        tmp_path: Path) -> None:
    first = {o.sop_instance_uid for o in standard[2]} | {o.series_instance_uid for o in standard[2]}
    second = {o.sop_instance_uid for o in mirrored[2]} | {o.series_instance_uid for o in mirrored[2]}
    assert not first & second
    # same images, newer algorithm version -> new UIDs
    study = standard[0]
    bumped = study.result.model_copy(update={"algorithm": study.result.algorithm.model_copy(update={"version": "0.2.0"})})
    outputs = build_outputs(bumped, study.fluid, study.maps, tmp_path, settings=SETTINGS)
    assert not {o.sop_instance_uid for o in outputs} & first


@pytest.mark.parametrize("status", ["not_applicable", "failed"])
def test_not_analysed_gives_sr_summary_and_kos_only(status: str, tmp_path: Path) -> None:
    study = make_study(seed_uid="fixture-na")
    reason = "no fat-suppressed fluid-sensitive series in the study"
    result = AnalysisResult(status=status, reason=reason, study_instance_uid=study.result.study_instance_uid,
                            algorithm=study.result.algorithm)
    headers = [ds.copy() for ds in study.fluid.datasets]
    for ds in headers:  # a paired body part without laterality (phantom B's T1-only study): no Laterality 2C error
        ds.BodyPartExamined = "HIP"
    outputs = build_outputs(result, None, None, tmp_path, settings=SETTINGS, source_datasets=headers)
    assert [o.kind for o in outputs] == ["sr", "sc_summary", "kos"]
    for o in outputs:
        assert dciodvfy_errors(tmp_path / o.path) == []
        ds = pydicom.dcmread(tmp_path / o.path)
        assert ds.StudyInstanceUID == study.result.study_instance_uid
        assert str(ds.PatientName) == str(study.full_datasets[0].PatientName)
    sr_ds = pydicom.dcmread(tmp_path / outputs[0].path)
    texts = [str(i.TextValue) for i in _walk(sr_ds.ContentSequence) if i.ValueType == "TEXT"]
    assert sum(t.count(reason) for t in texts) == 1  # the reason once
    container = sr_ds.ContentSequence[-1]
    [summary] = [i for i in container.ContentSequence if i.ValueType == "CODE"]
    assert summary.ConceptCodeSequence[0].CodeValue == "111245"  # no algorithms succeeded; without findings
    assert all(i.ConceptNameCodeSequence[0].CodeValue != "126010" for i in sr_ds.ContentSequence)  # no groups
    assert hd.sr.srread(tmp_path / outputs[0].path).SOPInstanceUID == outputs[0].sop_instance_uid
    kos = pydicom.dcmread(tmp_path / outputs[2].path)
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in kos.ContentSequence
            if i.ValueType == "IMAGE"] == [outputs[1].sop_instance_uid]
    assert build_outputs(result, None, None, tmp_path / "none", settings=SETTINGS) == []


def test_withheld_hip_has_no_group_only_its_reason(tmp_path: Path) -> None:
    study = make_study(seed_uid="fixture-withheld")
    reason = "fat suppression failed around the left hip; withheld without a T1"
    left = study.result.sides["left"]
    withheld = left.model_copy(update={"present": None, "reason": reason, "oedema_volume_ml": None,
                                       "effusion": None, "pattern": None})
    result = study.result.model_copy(update={"sides": {"right": study.result.sides["right"], "left": withheld}})
    outputs = build_outputs(result, study.fluid, study.maps, tmp_path, settings=SETTINGS)
    sr_path = _path(tmp_path, outputs, "sr")
    assert dciodvfy_errors(sr_path) == []
    sr = read_report(sr_path)
    assert [str(g.tracking_identifier) for g in sr.get_volumetric_roi_measurement_groups()] == ["Right hip: no BME"]
    ds = pydicom.dcmread(sr_path)
    reasons = [i.TextValue for i in ds.ContentSequence[-1].ContentSequence
               if i.ConceptNameCodeSequence[0].CodeValue == "NOTASSESSED"]
    assert reasons == [f"Left hip: {reason}"]
    summary = [i for i in ds.ContentSequence[-1].ContentSequence if i.ValueType == "CODE"]
    assert summary[0].ConceptCodeSequence[0].CodeValue == "111243"  # not all succeeded; without findings


def test_dcmqi_reads_the_measurement_report(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                            tmp_path: Path) -> None:
    """An independent TID 1500 reader (QIICR dcmqi) finds finding, site, laterality and the measurements."""
    _, out, outputs = standard
    target = tmp_path / "sr.json"
    # dcmqi's wheel installs tid1500reader beside this interpreter (on PATH only in an activated venv)
    reader = Path(sys.executable).parent / "tid1500reader"
    proc = subprocess.run([str(reader), "--inputDICOM", str(_path(out, outputs, "sr")),
                           "--outputMetadata", str(target)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    by_id = {m["TrackingIdentifier"]: m for m in json.loads(target.read_text())["Measurements"]}
    left = by_id["Left hip BME"]
    assert left["Finding"]["CodeValue"] == "79654002" and left["Laterality"]["CodeMeaning"] == "Left"
    assert left["FindingSite"]["CodeValue"] == "14016003"
    assert {i["units"]["CodeValue"] for i in left["measurementItems"]} == {"mL", "%", "1"}
    right = by_id["Right hip: no BME"]
    assert right["Finding"]["CodeValue"] == "281900007" and right["Laterality"]["CodeMeaning"] == "Right"


def test_sources_without_type2_patient_attributes(tmp_path: Path) -> None:
    """Anonymised sources often lack PatientBirthDate, StudyID...: outputs still build, valid, with them empty."""
    import dataclasses

    study = make_study(seed_uid="fixture-minimal")
    stripped = []
    for ds in study.fluid.datasets:
        ds = ds.copy()
        for kw in ("PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
            if kw in ds:
                delattr(ds, kw)
        stripped.append(ds)
    fluid = dataclasses.replace(study.fluid, datasets=tuple(stripped))
    outputs = build_outputs(study.result, fluid, study.maps, tmp_path, settings=SETTINGS)
    sr = next(o for o in outputs if o.kind == "sr")
    assert dciodvfy_errors(tmp_path / sr.path) == []
    ds = pydicom.dcmread(tmp_path / sr.path)
    assert ds.PatientBirthDate == "" and ds.PatientID == study.fluid.datasets[0].PatientID


def test_summary_text_stays_inside_its_cells_and_margins() -> None:
    """A long follow-up cell is fitted to its column (smaller font, then an ellipsis): nothing runs into the
    neighbouring column, and no text comes closer than the margin to the image edge."""
    from workers.dicom_out.render import (
        SUMMARY_BOTTOM_MARGIN,
        SUMMARY_TOP_MARGIN,
        SUMMARY_WIDTH,
        SummaryContent,
        fit,
        summary_image,
    )

    long_cell = "yes (12.3 mL, fluid layer up to 13 mm) \u2192 yes (11.9 mL, fluid layer up to 12 mm)"
    content = SummaryContent(version="0.1.0", title="Bone marrow oedema summary - follow-up of 2026-03-02",
                             table_header=("", "Right hip", "Left hip"),
                             table_rows=(("Effusion then \u2192 now", long_cell, long_cell),),
                             findings="word " * 400, notes=("note " * 200,))
    rgb = summary_image(content, None).astype(np.int32)
    assert not rgb[:SUMMARY_TOP_MARGIN].any() and not rgb[-SUMMARY_BOTTOM_MARGIN:].any()  # for the viewer's text
    bright = rgb.max(axis=2) > 120
    margin, col0, row_h = 24, 290, 38
    col_w = (SUMMARY_WIDTH - 2 * margin - col0) // 2
    top = SUMMARY_TOP_MARGIN + 48 + margin + row_h  # the first table row (below the header row)
    for start in (margin + col0, margin + col0 + col_w):  # where the right and the left hip columns begin
        gutter = bright[top:top + row_h, start - 9:start + 9]
        assert not gutter.any(), f"text in the gutter at x={start}"
    assert not bright[SUMMARY_TOP_MARGIN + 48:, SUMMARY_WIDTH - 20:].any()  # right margin below the banner
    text, size = fit(long_cell, 21, col_w - 20)
    assert size >= 12 and (text.endswith("\u2026") or text == long_cell)
