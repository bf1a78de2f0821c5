"""C-STORE response statuses and association outcomes, named and classified for the sender.

DICOM PS3.4 Annex B.2.3 (Storage) and PS3.7 Annex C (general DIMSE statuses). Every status the
PACS may answer falls in exactly one :class:`StatusCategory`: stored (success or warning),
refused for good (never retried) or failed for now (retried with backoff).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class StoreStatus(IntEnum):
    """C-STORE response status codes the sender recognises by name."""

    SUCCESS = 0x0000
    WARNING_ATTRIBUTE_LIST = 0x0107
    WARNING_ATTRIBUTE_OUT_OF_RANGE = 0x0116
    PROCESSING_FAILURE = 0x0110
    INVALID_SOP_INSTANCE = 0x0117
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NOT_AUTHORISED = 0x0124
    DUPLICATE_INVOCATION = 0x0210
    UNRECOGNISED_OPERATION = 0x0211
    MISTYPED_ARGUMENT = 0x0212
    RESOURCE_LIMITATION = 0x0213
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    WARNING_COERCION = 0xB000
    WARNING_ELEMENTS_DISCARDED = 0xB006
    WARNING_DATA_SET_DOES_NOT_MATCH = 0xB007
    CANNOT_UNDERSTAND = 0xC000
    CANCEL = 0xFE00


class StatusCategory(Enum):
    """What a C-STORE status means for the instance that was sent."""

    STORED = "stored"
    STORED_WITH_WARNING = "stored_with_warning"
    REFUSED = "refused"  # permanent: sending the same object again gets the same answer
    TRANSIENT = "transient"  # the PACS may accept it later


@dataclass(frozen=True)
class StatusMeaning:
    """Category of a status plus a short human reason."""

    category: StatusCategory
    reason: str


_EXACT: dict[int, StatusMeaning] = {
    StoreStatus.SUCCESS: StatusMeaning(StatusCategory.STORED, "stored"),
    StoreStatus.WARNING_ATTRIBUTE_LIST: StatusMeaning(
        StatusCategory.STORED_WITH_WARNING, "stored with warning: attribute list error"
    ),
    StoreStatus.WARNING_ATTRIBUTE_OUT_OF_RANGE: StatusMeaning(
        StatusCategory.STORED_WITH_WARNING, "stored with warning: attribute value out of range"
    ),
    StoreStatus.PROCESSING_FAILURE: StatusMeaning(StatusCategory.TRANSIENT, "processing failure"),
    StoreStatus.INVALID_SOP_INSTANCE: StatusMeaning(StatusCategory.REFUSED, "invalid SOP instance"),
    StoreStatus.SOP_CLASS_NOT_SUPPORTED: StatusMeaning(
        StatusCategory.REFUSED, "SOP class not supported"
    ),
    StoreStatus.NOT_AUTHORISED: StatusMeaning(StatusCategory.REFUSED, "not authorised"),
    StoreStatus.DUPLICATE_INVOCATION: StatusMeaning(StatusCategory.REFUSED, "duplicate invocation"),
    StoreStatus.UNRECOGNISED_OPERATION: StatusMeaning(
        StatusCategory.REFUSED, "unrecognised operation"
    ),
    StoreStatus.MISTYPED_ARGUMENT: StatusMeaning(StatusCategory.REFUSED, "mistyped argument"),
    StoreStatus.RESOURCE_LIMITATION: StatusMeaning(StatusCategory.TRANSIENT, "resource limitation"),
    StoreStatus.CANCEL: StatusMeaning(StatusCategory.TRANSIENT, "cancelled by the PACS"),
    StoreStatus.WARNING_COERCION: StatusMeaning(
        StatusCategory.STORED_WITH_WARNING, "stored with warning: coercion of data elements"
    ),
    StoreStatus.WARNING_ELEMENTS_DISCARDED: StatusMeaning(
        StatusCategory.STORED_WITH_WARNING, "stored with warning: elements discarded"
    ),
    StoreStatus.WARNING_DATA_SET_DOES_NOT_MATCH: StatusMeaning(
        StatusCategory.STORED_WITH_WARNING, "stored with warning: data set does not match SOP class"
    ),
}

#: (first, last, meaning) for the status ranges of PS3.4 B.2.3.
_RANGES: tuple[tuple[int, int, StatusMeaning], ...] = (
    (0xA700, 0xA7FF, StatusMeaning(StatusCategory.TRANSIENT, "out of resources")),
    (0xA900, 0xA9FF, StatusMeaning(StatusCategory.REFUSED, "data set does not match SOP class")),
    (0xB000, 0xBFFF, StatusMeaning(StatusCategory.STORED_WITH_WARNING, "stored with warning")),
    (0xC000, 0xCFFF, StatusMeaning(StatusCategory.REFUSED, "cannot understand")),
)


def classify_store_status(status: int) -> StatusMeaning:
    """Classify a C-STORE response status; an unknown failure code is refused (never looped on)."""
    exact = _EXACT.get(status)
    if exact is not None:
        return exact
    for first, last, meaning in _RANGES:
        if first <= status <= last:
            return StatusMeaning(meaning.category, f"{meaning.reason} (0x{status:04X})")
    return StatusMeaning(StatusCategory.REFUSED, f"unknown failure status 0x{status:04X}")


class ContextResult(IntEnum):
    """Presentation-context negotiation results (PS3.8 9.3.3.2)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


def context_rejection_reason(result: int | None) -> str:
    """Human reason for a rejected presentation context."""
    if result == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED:
        return "SOP class not supported"
    if result == ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED:
        return "transfer syntax not supported"
    if result == ContextResult.USER_REJECTION:
        return "presentation context rejected by the PACS"
    return "presentation context not accepted"


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ result field (PS3.8 9.3.4)."""

    PERMANENT = 1
    TRANSIENT = 2
