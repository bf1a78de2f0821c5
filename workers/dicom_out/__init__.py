"""DICOM builders: SEG, TID 1500 SR and RGB secondary captures from an analysis result."""

from workers.dicom_out.build import OutputInputError, build_outputs, load_standard_tables
from workers.dicom_out.findings import draft_findings

__all__ = ["OutputInputError", "build_outputs", "draft_findings", "load_standard_tables"]
