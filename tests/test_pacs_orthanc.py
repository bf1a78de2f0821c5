"""The Orthanc test harness itself: start, upload, list, route, fetch, restart, stop."""

from __future__ import annotations

import json
import time
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread

from marrowmap.settings import load_settings
from tests.dicom_out_fixtures import make_study
from tests.listener_fixtures import Harness, harness  # noqa: F401  (fixture)
from tests.orthanc_harness import (
    Modality,
    Orthanc,
    running_orthanc,
    series_by_modality,
    wait_for,
)
from tests.pacs_peers import COMPREHENSIVE_3D_SR, running_test_pacs, write_result_files
from workers.dicom_out import build_outputs
from workers.pacs.store_scu import send_instances

pytestmark = pytest.mark.integration

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
AUTOROUTE_LUA = Path(__file__).resolve().parents[1] / "config" / "orthanc" / "autoroute.lua"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_result_files(tmp_path_factory.mktemp("files"))


def _study_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def test_upload_list_fetch_route_restart(files: dict[str, Path], tmp_path: Path) -> None:
    source = files["SR"].parent / "source"
    study_uid = _study_uid(files["SR"])
    with running_test_pacs(ae_title="ROUTEDEST", sop_classes=[MR_STORAGE]) as dest, \
            running_orthanc(tmp_path / "orthanc",
                            modalities={"dest": Modality("ROUTEDEST", dest.port)}) as orthanc:
        ids = orthanc.upload_folder(source)
        assert len(ids) == 3
        assert orthanc.studies() == [orthanc.study_id(study_uid)]
        assert [s["MainDicomTags"]["Modality"] for s in orthanc.series(study_uid)] == ["MR"]
        instances = orthanc.instances(study_uid)
        assert len(instances) == 3
        fetched = dcmread(BytesIO(orthanc.instance_file(instances[0]["ID"])))
        assert fetched.StudyInstanceUID == study_uid
        assert orthanc.instance_tags(instances[0]["ID"])["StudyInstanceUID"] == study_uid

        # route the study as a PACS auto-route does
        answer = orthanc.send_study(study_uid, "dest")
        assert answer["InstancesCount"] == 3
        assert len(dest.stored) == 3

        # data survive a restart on the same ports
        orthanc.stop()
        assert not orthanc.is_up()
        orthanc.start()
        assert len(orthanc.instances(study_uid)) == 3
    assert orthanc.process is None


def test_orthanc_accepts_sr_sc_seg_from_marrowmap(files: dict[str, Path], tmp_path: Path) -> None:
    study_uid = _study_uid(files["SR"])
    with running_orthanc(tmp_path / "orthanc",
                         modalities={"marrowmap": Modality("MARROWMAP", 11112)}) as orthanc:
        orthanc.upload_folder(files["SR"].parent / "source")
        settings = load_settings(ae_title="MARROWMAP", pacs_ae_title=orthanc.aet,
                                 pacs_host="127.0.0.1", pacs_port=orthanc.dicom_port)
        report = send_instances([files["SR"], files["SC"], files["SEG"]], settings=settings)
        assert report.state == "sent", report.summary
        grouped = series_by_modality(orthanc.series(study_uid))
        assert sorted(grouped) == ["MR", "OT", "SEG", "SR"]  # highdicom's SC carries Modality OT
        assert len(orthanc.instances(study_uid)) == 6

        # re-sending the same objects does not duplicate them
        again = send_instances([files["SR"], files["SC"], files["SEG"]], settings=settings)
        assert again.state == "sent"
        assert len(orthanc.instances(study_uid)) == 6

        # an unknown calling AE is refused for good, not retried
        stranger = load_settings(ae_title="STRANGER", pacs_ae_title=orthanc.aet,
                                 pacs_host="127.0.0.1", pacs_port=orthanc.dicom_port)
        refused = send_instances([files["SR"]], settings=stranger)
        assert refused.state == "send_failed" and not refused.transient
        assert refused.summary == (
            "send failed: SR refused (association rejected: calling ae title not recognised)"
        )


def test_dicomweb_plugin_is_optional(tmp_path: Path, files: dict[str, Path]) -> None:
    with running_orthanc(tmp_path / "orthanc", dicomweb=True) as orthanc:
        orthanc.upload(files["SR"])
        studies = orthanc.get("/dicom-web/studies")
        assert len(studies) == 1
    bare = Orthanc(workdir=tmp_path / "bare")
    assert bare.config()["Plugins"] == []


def test_documented_autoroute_forwards_stable_mr_series_only(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """config/orthanc/autoroute.lua (README, docker-compose dev profile) really routes."""
    with running_test_pacs(ae_title="MARROWMAP", sop_classes=[MR_STORAGE, COMPREHENSIVE_3D_SR]) \
            as marrowmap, running_orthanc(
                tmp_path / "orthanc", modalities={"marrowmap": Modality("MARROWMAP", marrowmap.port)},
                lua_scripts=[AUTOROUTE_LUA], stable_age_seconds=1) as orthanc:
        orthanc.upload_folder(files["SR"].parent / "source")
        orthanc.upload(files["SR"])
        wait_for(lambda: len(marrowmap.stored) >= 3, timeout=30, what="the routed MR series")
        time.sleep(2.5)  # the SR series is stable too by now; it must not follow
        assert marrowmap.kinds() == [MR_STORAGE] * 3


@pytest.mark.e2e
def test_results_in_the_pacs_are_never_routed_back_into_a_job(harness: Harness, tmp_path: Path) -> None:  # noqa: F811
    """Orthanc with the shipped auto-route and the real listener: the study's MR images become one job; the
    results stored next to them (SR, SEG, Parametric Map, KOS, SC overlays with Modality MR) are not forwarded,
    and pushed to the listener by hand they are accepted, logged and become no job."""
    study = make_study(seed_uid="orthanc-own-results")
    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    for k, ds in enumerate(study.full_datasets):
        ds.save_as(source / f"mr{k:03d}.dcm", enforce_file_format=True)
    outputs = build_outputs(study.result, study.fluid, study.maps, out, settings=load_settings())
    listener = harness.start_listener()
    with running_orthanc(tmp_path / "orthanc", modalities={"marrowmap": Modality("MARROWMAP", harness.port)},
                         lua_scripts=[AUTOROUTE_LUA], stable_age_seconds=1) as orthanc:
        orthanc.upload_folder(source)
        for o in outputs:
            orthanc.upload(out / o.path)
        study_uid = str(study.result.study_instance_uid)
        wait_for(lambda: len(harness.queue_messages()) == 1, timeout=60, what="the MR series' job")
        time.sleep(3.5)  # every result series is stable by now; none may follow
        [job] = harness.queue_messages()
        assert [s["modality"] for s in job["kwargs"]["job"]["series"]] == ["MR"]
        assert len(job["kwargs"]["job"]["series"]) == 1  # the source series only
        results = [s["ID"] for s in orthanc.series(study_uid)
                   if s["MainDicomTags"].get("SeriesInstanceUID") != study.fluid.series_instance_uid]
        assert len(results) == 6
        answer = orthanc.post("/modalities/marrowmap/store", {"Resources": results, "Synchronous": True})
        assert answer["InstancesCount"] == len(outputs)
    wait_for(lambda: listener.events("study.own_results"), timeout=20, what="the results batch")
    time.sleep(1.5)
    assert len(harness.queue_messages()) == 1
    assert [r["state"] for r in json.loads(harness.cli("status", "--json").stdout)] == ["queued"]
