"""What marks a DICOM object as one of MarrowMap's own results.

The workers write these markers into every output; the listener's routing reads them, so
results that come back (a PACS auto-route, a re-push of the whole study) are accepted and
logged but never analysed again. Shared here because the listener never imports worker code.
"""

from __future__ import annotations

#: Manufacturer (0008,0070) and Manufacturer's Model Name (0008,1090) of every output.
MANUFACTURER = "MarrowMap"
MODEL_NAME = "MarrowMap BME map"

#: Series Number of each output series.
SERIES_NUMBERS: dict[str, int] = {
    "seg": 9901,
    "sr": 9902,
    "sc_overlay": 9903,
    "sc_summary": 9904,
    "pmap": 9905,
    "kos": 9906,
    "rejection": 9907,  # IOCM rejection note withdrawing superseded results (workers.supersede)
}

#: SOP classes MarrowMap writes: Segmentation, Comprehensive 3D SR, Secondary Capture,
#: Parametric Map, Key Object Selection. None of them is an MR image, so none is ever routed.
SOP_CLASSES: frozenset[str] = frozenset({
    "1.2.840.10008.5.1.4.1.1.66.4",
    "1.2.840.10008.5.1.4.1.1.88.34",
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.30",
    "1.2.840.10008.5.1.4.1.1.88.59",
})


def is_own_output(manufacturer: str, model_name: str) -> bool:
    """True when Manufacturer and Model Name are MarrowMap's (case and padding ignored)."""
    return (manufacturer.strip().casefold() == MANUFACTURER.casefold()
            and model_name.strip().casefold() == MODEL_NAME.casefold())


def is_derived_secondary(image_type: tuple[str, ...]) -> bool:
    """True for ImageType DERIVED\\SECONDARY: made from other images after acquisition
    (reformats, screen captures, overlays), never an acquisition to analyse.

    DERIVED\\PRIMARY (e.g. Dixon water images, computed from the acquired echoes) is not excluded.
    """
    values = [v.strip().upper() for v in image_type]
    return len(values) >= 2 and values[0] == "DERIVED" and values[1] == "SECONDARY"
