"""RGB Secondary Capture images: 8-bit, PlanarConfiguration 0, uncompressed Explicit VR LE.

Each image names the source slice it shows in its Source Image Sequence (an overlay: the
fluid-sensitive slice under the colour; the summary: its key slice). Modality is copied from
the source (MR), because viewers group and hang SC images by it; what keeps these images from
being analysed again is the SOP class (Secondary Capture, never routed), ImageType
DERIVED\\SECONDARY and Manufacturer/Model "MarrowMap" (``marrowmap.markers``).
BurnedInAnnotation is YES: every image carries text and numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from marrowmap.markers import MANUFACTURER, MODEL_NAME
from workers.dicom_out.provenance import DEVICE_SERIAL_NUMBER
from workers.dicom_out.render import RGBArray
from workers.io.types import SliceRef


def source_image_item(ref: SliceRef) -> Dataset:
    """A Source Image Sequence item: the source slice (or frame), purpose "source image for image processing"."""
    item = Dataset()
    item.ReferencedSOPClassUID = ref.sop_class_uid
    item.ReferencedSOPInstanceUID = ref.sop_instance_uid
    if ref.frame_number is not None:
        item.ReferencedFrameNumber = ref.frame_number
    purpose = codes.DCM.SourceImageForImageProcessingOperation
    item.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept(purpose.value, purpose.scheme_designator,
                                                              purpose.meaning)]
    return item


def build_sc(pixels: RGBArray, ref: Dataset, *, series_uid: str, instance_uid: str, series_number: int,
             instance_number: int, series_description: str, version: str,
             orientation: tuple[str, str] | None, pixel_spacing: tuple[float, float] | None,
             equipment: Sequence[hd.ContributingEquipment], sources: Sequence[SliceRef] = (),
             derivation: str = "") -> hd.sc.SCImage:
    """One RGB SC image in the study of ``ref``. ``orientation`` None: a composite without one.

    ``sources``: the source slices the image shows; ``derivation``: how it was made, in words.
    """
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
    if sources:
        sc.SourceImageSequence = [source_image_item(s) for s in sources]
    if derivation:
        sc.DerivationDescription = derivation[:1024]
    return sc
