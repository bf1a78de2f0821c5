"""DICOM outputs built from the hand-made fixture study: validity, content, geometry, determinism."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian

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
    values_of,
)
from workers.analysis.result import AnalysisResult, OutputFile
from workers.dicom_out import build_outputs, draft_findings
from workers.dicom_out.build import overlay_frames
from workers.dicom_out.geometry import edge_letters, source_frames
from workers.dicom_out.render import PANEL_WIDTH, overlay_image_box
from workers.dicom_out.stack import sample_maps

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


@pytest.mark.parametrize("case", ["standard", "multiframe", "mirrored", "normal"])
def test_every_output_passes_dciodvfy(case: str, request: pytest.FixtureRequest) -> None:
    _, out, outputs = request.getfixturevalue(case)
    kinds = _kinds(outputs)
    assert set(kinds) == {"seg", "sr", "sc_overlay", "sc_summary"}
    # overlays share one code path: the first and the last stand for the series (dciodvfy takes ~1 s a file)
    checked = [*kinds["seg"], *kinds["sr"], kinds["sc_overlay"][0], kinds["sc_overlay"][-1], *kinds["sc_summary"]]
    for o in checked:
        assert dciodvfy_errors(out / o.path) == [], o.path


def test_dsrdump_reads_the_sr(standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    _, out, outputs = standard
    sr = next(o for o in outputs if o.kind == "sr")
    proc = subprocess.run(["dsrdump", str(out / sr.path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Left hip BME (head and neck)" in proc.stdout
    assert "Right hip: no BME detected" in proc.stdout


def test_series_study_and_patient_modules(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                          multiframe: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    for study, out, outputs in (standard, multiframe):
        src = study.full_datasets[0]
        numbers = {"seg": 9901, "sr": 9902, "sc_overlay": 9903, "sc_summary": 9904}
        for o in outputs:
            ds = pydicom.dcmread(out / o.path)
            assert ds.SOPInstanceUID == o.sop_instance_uid and ds.SeriesInstanceUID == o.series_instance_uid
            assert ds.SeriesNumber == numbers[o.kind]
            assert "NOT FOR DIAGNOSTIC USE" in ds.SeriesDescription
            for kw in ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                       "PatientSex", "PatientAge", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                       "AccessionNumber", "ReferringPhysicianName", "StudyDescription"):
                assert ds.get(kw) == src.get(kw), (o.path, kw)
            assert ds.Manufacturer == "MarrowMap" and ds.SoftwareVersions == "0.1.0"
            assert "MarrowMap" in [item.Manufacturer for item in ds.ContributingEquipmentSequence]
            assert ds.ContentDate == "20260315"  # from the source, not the wall clock
        # non-ASCII names survive byte-exactly in the file's declared character set
        names = {str(pydicom.dcmread(out / o.path).PatientName) for o in outputs}
        assert names == {str(src.PatientName)}


def test_non_ascii_names_are_not_mangled(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                         multiframe: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    assert str(pydicom.dcmread(standard[1] / standard[2][0].path).PatientName) == "Müller^Jürgen=ミュラー^ユルゲン"
    mf = pydicom.dcmread(multiframe[1] / multiframe[2][0].path)
    assert mf.SpecificCharacterSet == "ISO_IR 100" and str(mf.PatientName) == "Åström^Zoë"


def test_secondary_captures_are_plain_rgb(standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    _, out, outputs = standard
    for o in outputs:
        if not o.kind.startswith("sc_"):
            continue
        ds = pydicom.dcmread(out / o.path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated, ds.PlanarConfiguration) == \
            ("RGB", 3, 8, 0)
        assert ds.Modality == "MR" and ds.BurnedInAnnotation == "YES"
    overlays = [o for o in outputs if o.kind == "sc_overlay"]
    assert len({o.series_instance_uid for o in overlays}) == 1
    assert [pydicom.dcmread(out / o.path).InstanceNumber for o in overlays] == list(range(1, len(overlays) + 1))


def test_seg_reads_back_and_matches_the_maps(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                             multiframe: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    for study, out, outputs in (standard, multiframe):
        seg = hd.seg.segread(out / next(o.path for o in outputs if o.kind == "seg"))
        labels = [seg.get_segment_description(n).segment_label for n in seg.segment_numbers]
        assert labels == ["Right femoral head", "Right femoral neck", "Right intertrochanteric region",
                          "Left hip BME", "Left femoral head", "Left femoral neck", "Left intertrochanteric region"]
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


def test_every_finding_has_an_image_region(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                           normal: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    """OHIF shows (and 3.13 only survives) findings whose merged groups carry a 2-D SCOORD."""
    for _, out, outputs in (standard, normal):
        sr = read_report(out / next(o.path for o in outputs if o.kind == "sr"))
        findings = findings_by_tracking(sr)
        assert len(findings) == 8  # per hip: the oedema finding and three regions
        for name, members in findings.items():
            planar = [g for g in members if isinstance(g, hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations)]
            assert planar and planar[0].roi is not None, name
        # and no TID 1501 group (it would have no region)
        assert sr.get_image_measurement_groups() == []


def test_sr_measurements_equal_result_json(standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    study, out, outputs = standard
    (out / "result.json").write_text(study.result.model_dump_json())
    result = AnalysisResult.model_validate_json((out / "result.json").read_text())
    sr = read_report(out / next(o.path for o in outputs if o.kind == "sr"))
    findings = findings_by_tracking(sr)
    left, right = result.sides["left"], result.sides["right"]
    for title, side in (("Left hip BME (head and neck)", left), ("Right hip: no BME detected", right)):
        members = findings[title]
        for g in members:
            assert laterality(g) == side.side.capitalize()
        values = values_of(members)
        assert values["Volume"] == pytest.approx(side.oedema_volume_ml, rel=1e-12)
        assert values["Hip joint effusion volume"] == pytest.approx(side.effusion_volume_ml, rel=1e-12)
        if side.mean_signal_ratio is not None:
            assert values["Mean fluid-sensitive signal ratio to reference marrow"] == \
                pytest.approx(side.mean_signal_ratio, rel=1e-12)
            assert values["P95 fluid-sensitive signal ratio to reference marrow"] == \
                pytest.approx(side.p95_signal_ratio, rel=1e-12)
            assert values["Mean T1 signal ratio to reference fatty marrow"] == pytest.approx(side.mean_t1_ratio)
        evaluations = evaluations_of(members)
        assert evaluations["Edema"] == ("Present" if side.present else "Absent")
        assert evaluations["Effusion"] == ("Present" if side.effusion else "Absent")
        assert evaluations["Bone marrow oedema pattern"] == {
            "diffuse": "Diffuse", "focal": "Focal subchondral", "none": "No oedema"}[side.pattern or "none"]
    # the left oedema is one finding: its polygon (planar) and its SEG segment (volumetric)
    kinds = {type(g).__name__ for g in findings["Left hip BME (head and neck)"]}
    assert kinds == {"PlanarROIMeasurementsAndQualitativeEvaluations",
                     "VolumetricROIMeasurementsAndQualitativeEvaluations"}
    name = {"head": "femoral head", "neck": "femoral neck", "intertrochanteric": "intertrochanteric region"}
    for side in (left, right):
        for region, m in side.regions.items():
            members = findings[f"{side.side.capitalize()} {name[region]} BME {m.involvement_pct:.0f}%"]
            values = values_of(members)
            assert values["Volume"] == pytest.approx(m.region_volume_ml, rel=1e-12)
            assert values["Bone marrow oedema volume within region"] == pytest.approx(m.oedema_volume_ml, rel=1e-12)
            assert values["Fraction of region volume with bone marrow oedema"] == \
                pytest.approx(m.involvement_pct, rel=1e-12)
            assert {laterality(g) for g in members} == {side.side.capitalize()}
    # the draft findings paragraph is in the SR as text
    texts = [item.TextValue for item in sr[0].ContentSequence[-1].ContentSequence]
    assert texts == [draft_findings(result)]


def test_sr_polygon_sits_on_the_largest_oedema_slice(standard: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    study, out, outputs = standard
    sr = read_report(out / next(o.path for o in outputs if o.kind == "sr"))
    group = next(g for g in sr.get_planar_roi_measurement_groups()
                 if g.tracking_identifier == "Left hip BME (head and neck)")
    roi = group.roi
    assert roi is not None and roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    points = roi.value
    np.testing.assert_array_equal(points[0], points[-1])  # closed
    ref_uid = roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    z = study.result.sides["left"].largest_slice_index
    assert z is not None and ref_uid == study.fluid.slices[z].sop_instance_uid
    frame = source_frames(study.fluid)[z]
    # polygon centroid lies in the left femoral head (LPS +x)
    col, row = points[:, 0].mean() - 0.5, points[:, 1].mean() - 0.5
    lps = frame.position + col * frame.spacing[1] * frame.row_dir + row * frame.spacing[0] * frame.col_dir
    assert lps[0] > 0
    assert np.linalg.norm(lps[[0, 2]] - HEAD_CENTRES["left"][[0, 2]]) < HEAD_RADIUS


def test_normal_study_says_no_oedema_per_side(normal: tuple[FixtureStudy, Path, list[OutputFile]]) -> None:
    _, out, outputs = normal
    seg = hd.seg.segread(out / next(o.path for o in outputs if o.kind == "seg"))
    labels = [seg.get_segment_description(n).segment_label for n in seg.segment_numbers]
    assert not any("BME" in label for label in labels) and "Left femoral head" in labels
    sr = read_report(out / next(o.path for o in outputs if o.kind == "sr"))
    titles = [g.tracking_identifier for g in sr.get_planar_roi_measurement_groups()]
    assert [t for t in titles if t and " hip" in t] == ["Right hip: no BME detected", "Left hip: no BME detected"]


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
def test_not_analysed_gives_sr_and_summary_only(status: str, tmp_path: Path) -> None:
    study = make_study(seed_uid="fixture-na")
    result = AnalysisResult(status=status, reason="no fat-suppressed fluid-sensitive series in the study",
                            study_instance_uid=study.result.study_instance_uid, algorithm=study.result.algorithm)
    outputs = build_outputs(result, None, None, tmp_path, settings=SETTINGS, source_datasets=study.fluid.datasets)
    assert [o.kind for o in outputs] == ["sr", "sc_summary"]
    for o in outputs:
        assert dciodvfy_errors(tmp_path / o.path) == []
        ds = pydicom.dcmread(tmp_path / o.path)
        assert ds.StudyInstanceUID == study.result.study_instance_uid
        assert str(ds.PatientName) == str(study.full_datasets[0].PatientName)
    sr = read_report(tmp_path / outputs[0].path)
    text = sr[0].ContentSequence[-1].ContentSequence[0].TextValue
    assert "no fat-suppressed fluid-sensitive series" in text and "DRAFT" in text
    assert sr.get_planar_roi_measurement_groups() == []
    assert build_outputs(result, None, None, tmp_path / "none", settings=SETTINGS) == []


def test_dcmqi_reads_the_measurement_report(standard: tuple[FixtureStudy, Path, list[OutputFile]],
                                            tmp_path: Path) -> None:
    """An independent TID 1500 reader (QIICR dcmqi) finds finding, site, laterality and segment references."""
    _, out, outputs = standard
    sr = next(o for o in outputs if o.kind == "sr")
    target = tmp_path / "sr.json"
    proc = subprocess.run(["tid1500reader", "--inputDICOM", str(out / sr.path), "--outputMetadata", str(target)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    measurements = json.loads(target.read_text())["Measurements"]
    by_id = {m["TrackingIdentifier"]: m for m in measurements}
    left = next(m for m in measurements
                if m["TrackingIdentifier"] == "Left hip BME (head and neck)" and "ReferencedSegment" in m)
    assert left["Finding"]["CodeValue"] == "79654002" and left["Laterality"]["CodeMeaning"] == "Left"
    assert "ReferencedSegment" in left and left["FindingSite"]["CodeValue"] == "310651003"
    assert by_id["Right hip: no BME detected"]["Laterality"]["CodeMeaning"] == "Right"


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
