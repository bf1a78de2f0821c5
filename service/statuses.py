"""The DIMSE statuses the listener answers with (named, never magic numbers).

Values from DICOM PS3.7 Annex C (general) and C.4.2.1.4 (C-STORE). Our own enum: pynetdicom's
``Status.add`` mutates a global class at run time.
"""

from __future__ import annotations

from enum import IntEnum


class StoreStatus(IntEnum):
    """C-STORE response statuses."""

    SUCCESS = 0x0000
    #: Refused: Out of Resources (A7xx) - disk full or below the configured free-space watermark.
    OUT_OF_RESOURCES = 0xA700
    #: Error: Data Set does not match SOP Class (A9xx) - e.g. the SOP Instance UID differs.
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: Error: Cannot understand (Cxxx) - a required attribute is missing or invalid.
    CANNOT_UNDERSTAND = 0xC000
    #: Error: Cannot understand - the data set could not be decoded (garbage, truncated).
    CANNOT_DECODE = 0xC210
    #: Error: Cannot understand - over a receive limit (inflated size, instances per study; service.limits).
    OVER_LIMIT = 0xC001
    #: Failure: Processing failure (general status 0110) - an unexpected error while storing.
    PROCESSING_FAILURE = 0x0110


class EchoStatus(IntEnum):
    """C-ECHO response statuses."""

    SUCCESS = 0x0000
