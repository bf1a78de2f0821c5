"""Real DICOM peers for the send-back tests: a pynetdicom test PACS on a free loopback port,
and small but valid SR / SC / SEG result files built with highdicom.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom import AE, evt

VERIFICATION = "1.2.840.10008.1.1"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
RESULT_SOP_CLASSES = (COMPREHENSIVE_3D_SR, SC_STORAGE, SEG_STORAGE)
_TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TestPacs:
    """What a running test PACS received."""

    ae_title: str
    port: int
    stored: dict[str, Dataset] = field(default_factory=dict)  # by SOP Instance UID
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kinds(self) -> list[str]:
        """SOP Class UIDs of the stored instances (sorted)."""
        with self.lock:
            return sorted(str(ds.SOPClassUID) for ds in self.stored.values())


@contextmanager
def running_test_pacs(
    *,
    ae_title: str = "TESTPACS",
    sop_classes: Iterable[str] = RESULT_SOP_CLASSES,
    status: int = 0x0000,
    require_calling_aet: list[str] | None = None,
    delay_seconds: float = 0.0,
    maximum_associations: int = 10,
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[TestPacs]:
    """Run a storage SCP on 127.0.0.1 accepting only ``sop_classes``; every C-STORE answers
    ``status`` after ``delay_seconds`` (an instance is kept only when the status is Success or
    a warning). With ``ssl_context`` it speaks DICOM TLS only."""
    port = free_port()
    pacs = TestPacs(ae_title=ae_title, port=port)

    def on_store(event: Any) -> int:
        time.sleep(delay_seconds)
        with pacs.lock:
            pacs.requests += 1
            if status == 0x0000 or 0xB000 <= status <= 0xBFFF:
                ds = event.dataset
                ds.file_meta = event.file_meta
                pacs.stored[str(ds.SOPInstanceUID)] = ds
        return status

    ae = AE(ae_title=ae_title)
    ae.network_timeout = 10
    ae.maximum_associations = maximum_associations
    for uid in sop_classes:
        ae.add_supported_context(uid, _TRANSFER_SYNTAXES)
    ae.add_supported_context(VERIFICATION)
    if require_calling_aet:
        ae.require_calling_aet = require_calling_aet
    server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=ssl_context,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert server is not None
    try:
        yield pacs
    finally:
        server.shutdown()


def _source_mr(n_slices: int = 3, size: int = 16) -> list[Dataset]:
    """A tiny axial MR series with the modules highdicom needs for derived objects."""
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(7)
    out = []
    for k in range(n_slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = "Test^Pacs"
        ds.PatientID = "PACS-TEST"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.StudyID = "1"
        ds.AccessionNumber = "ACC1"
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.ReferringPhysicianName = ""
        ds.Modality = "MR"
        ds.Manufacturer = "Test"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.BodyPartExamined = "HIP"
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, float(k) * 4.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 4.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 1000, (size, size), dtype=np.uint16).tobytes()
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.EchoTime = 10
        ds.RepetitionTime = 500
        ds.EchoTrainLength = 1
        out.append(ds)
    return out


def write_result_files(folder: Path) -> dict[str, Path]:
    """Write one valid Comprehensive 3D SR, one Secondary Capture and one SEG to ``folder``,
    and the tiny MR series they derive from to ``folder/source``; return the result paths by
    kind (``SR``, ``SC``, ``SEG``)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = _source_mr()
    (folder / "source").mkdir(exist_ok=True)
    for k, ds in enumerate(source):
        ds.save_as(folder / "source" / f"mr{k:03d}.dcm", enforce_file_format=True)
    common: dict[str, Any] = {"manufacturer": "MarrowMap tests"}

    mask = np.zeros((len(source), source[0].Rows, source[0].Columns), dtype=bool)
    mask[:, 4:10, 4:10] = True
    algorithm = hd.AlgorithmIdentificationSequence(
        name="test", version="1", family=codes.DCM.ArtificialIntelligence
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="oedema",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Edema,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=source, pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=generate_uid(), series_number=901,
        sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer_model_name="tests", software_versions="1", device_serial_number="1",
        **common,
    )

    rgb = np.zeros((source[0].Rows, source[0].Columns, 3), dtype=np.uint8)
    rgb[4:10, 4:10, 0] = 255
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source[0], pixel_array=rgb,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8, coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
        series_number=902, instance_number=1, patient_orientation=("L", "P"), **common,
    )

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=generate_uid()),
    )
    measurement = hd.sr.Measurement(
        name=codes.SCT.Volume, value=1.5, unit=hd.sr.CodedConcept("ml", "UCUM", "milliliter"),
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="oedema"),
        measurements=[measurement],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("36083-7", "LN", "MRI Pelvis"),
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=source, content=report, series_instance_uid=generate_uid(), series_number=903,
        sop_instance_uid=generate_uid(), instance_number=1, **common,
    )

    paths = {"SEG": folder / "seg.dcm", "SC": folder / "sc.dcm", "SR": folder / "sr.dcm"}
    seg.save_as(paths["SEG"])
    sc.save_as(paths["SC"])
    sr.save_as(paths["SR"])
    return paths
