"""Sampling the analysis grid on source frames: the pixel-for-pixel case and the general one agree."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset

from workers.dicom_out.geometry import (
    GeometryError,
    SourceFrame,
    sample_on_frame,
    volume_index_grid,
)
from workers.io.types import SliceRef

SPACING = (0.8, 0.7, 4.0)  # x (columns), y (rows), z mm


def _volume() -> tuple[sitk.Image, np.ndarray]:
    array = np.arange(3 * 5 * 6, dtype=np.float32).reshape(3, 5, 6)  # z, y (rows), x (columns)
    image = sitk.GetImageFromArray(array)
    image.SetOrigin((10.0, -20.0, 5.0))  # type: ignore[no-untyped-call]
    image.SetSpacing(SPACING)  # type: ignore[no-untyped-call]
    return image, array


def _frame(z: int, position: tuple[float, float, float], row_dir: tuple[float, float, float],
           col_dir: tuple[float, float, float], rows: int = 5, columns: int = 6) -> SourceFrame:
    return SourceFrame(z=z, ref=SliceRef("1.2.840.10008.5.1.4.1.1.4", f"1.2.3.{z}"), dataset=Dataset(),
                       position=np.asarray(position), row_dir=np.asarray(row_dir, dtype=np.float64),
                       col_dir=np.asarray(col_dir, dtype=np.float64), spacing=(SPACING[1], SPACING[0]),
                       rows=rows, columns=columns)


def test_a_frame_that_is_the_slice_is_sampled_by_slicing() -> None:
    image, array = _volume()
    frame = _frame(1, (10.0, -20.0, 9.0), (1, 0, 0), (0, 1, 0))
    assert volume_index_grid(image, frame) is None
    assert np.array_equal(sample_on_frame(array, image, frame, None), array[1])


def test_a_flipped_frame_goes_through_the_index_grid() -> None:
    image, array = _volume()
    last_row_y = -20.0 + 4 * SPACING[1]
    frame = _frame(2, (10.0, last_row_y, 13.0), (1, 0, 0), (0, -1, 0))  # rows stored bottom-up
    grid = volume_index_grid(image, frame)
    assert grid is not None
    assert np.array_equal(sample_on_frame(array, image, frame, grid), array[2, ::-1, :])


def test_a_frame_off_its_slice_is_refused() -> None:
    image, _ = _volume()
    with pytest.raises(GeometryError):
        volume_index_grid(image, _frame(0, (10.0, -20.0, 9.0), (1, 0, 0), (0, 1, 0)))
