"""RGB Secondary Capture images: 8-bit, PlanarConfiguration 0, uncompressed Explicit VR LE.

Modality is copied from the source (MR): viewers treat an "OT" series of many frames
as a cine clip. BurnedInAnnotation is YES: every image carries text and numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from workers.dicom_out.provenance import DEVICE_SERIAL_NUMBER, MANUFACTURER, MODEL_NAME
from workers.dicom_out.render import RGBArray


def build_sc(pixels: RGBArray, ref: Dataset, *, series_uid: str, instance_uid: str, series_number: int,
             instance_number: int, series_description: str, version: str,
             orientation: tuple[str, str] | None, pixel_spacing: tuple[float, float] | None,
             equipment: Sequence[hd.ContributingEquipment]) -> hd.sc.SCImage:
    """One RGB SC image in the study of ``ref``. ``orientation`` None: a composite without one."""
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref, pixel_array=pixels, photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8, coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=orientation or ("L", "F"),
        series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=instance_uid,
        instance_number=instance_number, manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        software_versions=version, device_serial_number=DEVICE_SERIAL_NUMBER,
        pixel_spacing=pixel_spacing,  # type: ignore[arg-type]  # highdicom annotates int, means float
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=series_description, contributing_equipment=list(equipment),
    )
    if orientation is None:
        sc.PatientOrientation = []  # Type 2: present, empty
    sc.Modality = ref.get("Modality") or "MR"
    sc.BurnedInAnnotation = "YES"
    sc.PlanarConfiguration = 0
    return sc
