"""The Key Object Selection document: the images a PACS should show as key images.

Title "Of Interest" (DCM 113000, CID 7010), observer = the MarrowMap device. It flags the
summary key image and, for each hip with a reported finding, the overlay of the slice where
that hip's oedema (else its effusion) is largest; a study that was not analysed flags its
summary image only.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset

from marrowmap.markers import MANUFACTURER, MODEL_NAME
from workers.analysis.result import AnalysisResult
from workers.dicom_out import codes
from workers.dicom_out.provenance import DEVICE_SERIAL_NUMBER
from workers.dicom_out.uids import UidDeriver

DESCRIPTION = "MarrowMap key images: the summary and the slices where each hip's finding is largest"


def build_kos(key_objects: Sequence[Dataset], result: AnalysisResult, uids: UidDeriver, *, series_number: int,
              series_description: str, equipment: Sequence[hd.ContributingEquipment]
              ) -> hd.ko.KeyObjectSelectionDocument:
    """The KOS flagging ``key_objects`` (MarrowMap's own SC images, in the order given)."""
    observer = hd.sr.ObserverContext(
        observer_type=codes.device(),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uids.uid("sr.device"), name="MarrowMap", manufacturer_name=MANUFACTURER, model_name=MODEL_NAME,
            serial_number=DEVICE_SERIAL_NUMBER))
    content = hd.ko.KeyObjectSelection(document_title=codes.key_object_title(), referenced_objects=list(key_objects),
                                       observer_device_context=observer, description=DESCRIPTION)
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=list(key_objects), content=content, series_instance_uid=uids.uid("kos.series"),
        series_number=series_number, sop_instance_uid=uids.uid("kos.instance"), instance_number=1,
        manufacturer=MANUFACTURER, contributing_equipment=list(equipment),
        manufacturer_model_name=MODEL_NAME, software_versions=result.algorithm.version,
        series_description=series_description)
    return kos
