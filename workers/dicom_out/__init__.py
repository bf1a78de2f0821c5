"""DICOM builders: SEG, TID 1500 SR and RGB secondary captures from an analysis result.

The builders (highdicom, Pillow, scikit-image: about 2 s of imports) load on first use of a name
below, so importing ``workers.dicom_out.findings`` (the draft findings text) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.dicom_out.build import OutputInputError, build_outputs, load_standard_tables
    from workers.dicom_out.findings import draft_findings

__all__ = ["OutputInputError", "build_outputs", "draft_findings", "load_standard_tables"]
_HOME = {"OutputInputError": "build", "build_outputs": "build", "load_standard_tables": "build",
         "draft_findings": "findings"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
