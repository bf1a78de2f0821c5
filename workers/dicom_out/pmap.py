"""The Parametric Map of the oedema score, frame for frame on the fluid-sensitive source images.

Where the result reports oedema, each pixel holds the fluid-sensitive signal on the study's own
tissue scale: fat = 0, muscle = 1 (oedema is brighter than muscle, so mostly > 1); everywhere
else 0. Stored as 32-bit float with an identity Real World Value Mapping (unit UCUM "1"), so a
viewer can window it, set its opacity over the STIR and switch it off. Every frame names its
source image (Derivation Image Sequence > Source Image Sequence, purpose "source image for image
processing operation"), and the Referenced Series Sequence names the source series.

Why stored = real-world value (slope 1): highdicom 0.28.2 cannot apply a non-identity Real World
Value Mapping to float pixel data (``get_pixels`` raises AttributeError ``input_dtype``), so a
scaled encoding would break the commonest Python reader. OHIF 3.13 draws a parametric map's
stored value x 100 on a fixed 0-100 window: every oedema pixel (> 1) gets the top colour there.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from numpy.typing import NDArray

from marrowmap.markers import MANUFACTURER, MODEL_NAME
from workers.analysis.result import AnalysisResult
from workers.dicom_out import codes
from workers.dicom_out.provenance import DEVICE_SERIAL_NUMBER
from workers.dicom_out.stack import FrameMaps
from workers.dicom_out.uids import UidDeriver

#: the window a viewer opens the map with: 0 (fat) to 3 (three times muscle signal)
WINDOW_CENTER, WINDOW_WIDTH = 1.5, 3.0
LUT_LABEL = "BME score"
LUT_EXPLANATION = "Signal in oedema, fat = 0, muscle = 1; 0 outside oedema"


def _pixel_array(frames: Sequence[FrameMaps]) -> NDArray[np.float32]:
    first = frames[0].frame
    if first.ref.frame_number is None:
        return np.stack([fm.score for fm in frames]).astype(np.float32)
    array = np.zeros((int(first.dataset.get("NumberOfFrames", len(frames))), first.rows, first.columns),
                     dtype=np.float32)
    for fm in frames:
        array[(fm.frame.ref.frame_number or 1) - 1] = fm.score
    return array


def build_pmap(frames: Sequence[FrameMaps], result: AnalysisResult, uids: UidDeriver, *, series_number: int,
               series_description: str, equipment: Sequence[hd.ContributingEquipment]) -> hd.pm.ParametricMap:
    """The Parametric Map of one analysed study (frames: the fluid-sensitive slices with the reported oedema)."""
    first = frames[0].frame
    sources = [first.dataset] if first.ref.frame_number is not None else [fm.frame.dataset for fm in frames]
    pixels = _pixel_array(frames)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=LUT_LABEL, lut_explanation=LUT_EXPLANATION, unit=codes.unit_ratio(),
        value_range=(0.0, max(float(pixels.max()), 1.0)), slope=1.0, intercept=0.0)
    pm = hd.pm.ParametricMap(
        source_images=sources, pixel_array=pixels, series_instance_uid=uids.uid("pmap.series"),
        series_number=series_number, sop_instance_uid=uids.uid("pmap.instance"), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME, software_versions=result.algorithm.version,
        device_serial_number=DEVICE_SERIAL_NUMBER, contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=WINDOW_CENTER, window_width=WINDOW_WIDTH,
                                                         window_explanation="fat 0 to 3 x muscle")],
        content_label="BMESCORE", content_description="BME score (fat 0, muscle 1); not for diagnostic use",
        series_description=series_description, contributing_equipment=list(equipment),
    )
    dimension_uid = uids.uid("pmap.dimension-organization")  # highdicom draws a random one
    for item in [*pm.DimensionOrganizationSequence, *pm.DimensionIndexSequence]:
        item.DimensionOrganizationUID = dimension_uid
    return pm
