"""Typed reasons why a series (or one stack of it) could not be loaded as a volume.

Every error carries a human-readable ``reason`` that can go straight into a report
("STIR coronal: slice spacing not uniform: gap of 8.0 mm between slices 11 and 12,
expected 4.0 mm"). One series failing never stops the others from loading.
"""

from __future__ import annotations


class SeriesLoadError(Exception):
    """Base class: a series, or one stack of it, cannot become a volume."""

    kind = "series_load_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotAnImageError(SeriesLoadError):
    """The series holds non-image objects (SR, SEG, PR, KO, ...): skipped, noted."""

    kind = "not_an_image"


class NotMRError(SeriesLoadError):
    """The series holds images, but not MR Image / Enhanced MR Image storage."""

    kind = "not_mr"


class MissingGeometryError(SeriesLoadError):
    """ImagePositionPatient, ImageOrientationPatient or PixelSpacing is absent or invalid."""

    kind = "missing_geometry"


class InconsistentGeometryError(SeriesLoadError):
    """Slice positions do not lie along the slice normal (sheared or tilted stack)."""

    kind = "inconsistent_geometry"


class NonUniformSpacingError(SeriesLoadError):
    """Gaps or duplicate positions along the slice normal beyond the jitter tolerance."""

    kind = "non_uniform_spacing"


class SingleSliceError(SeriesLoadError):
    """A stack of one slice cannot be used for a volume analysis."""

    kind = "single_slice"


class MismatchedSizeError(SeriesLoadError):
    """Slices of one stack differ in matrix size (Rows/Columns) or pixel spacing."""

    kind = "mismatched_size"


class PixelDataError(SeriesLoadError):
    """Pixel data is missing, truncated, undecodable or not a single-channel image."""

    kind = "pixel_data"


class UnsupportedTransferSyntaxError(SeriesLoadError):
    """No installed decoder handles the transfer syntax of the pixel data."""

    kind = "unsupported_transfer_syntax"


class NoMRImagesError(SeriesLoadError):
    """The study folder holds no MR images at all."""

    kind = "no_mr_images"
