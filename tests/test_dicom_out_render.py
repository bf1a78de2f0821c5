"""Overlay rendering details: the oedema score is resized only where it is coloured."""

from __future__ import annotations

import numpy as np

from workers.dicom_out.render import _resize
from workers.dicom_out.stack import bounding_box


def test_a_window_of_the_resize_is_that_part_of_the_whole_resize() -> None:
    score = np.zeros((64, 80), dtype=np.float32)
    score[20:35, 41:60] = np.random.default_rng(0).random((15, 19), dtype=np.float32) * 3
    size = (120, 96)  # 1.5 x
    whole = _resize(score, size)
    box = bounding_box(whole > 0.01)
    assert box is not None
    left, top, right, bottom = box
    part = _resize(score, size, box)
    assert part.shape == (bottom - top, right - left)
    # the same bicubic weights up to rounding (Pillow computes them from the window's origin)
    np.testing.assert_allclose(part, whole[top:bottom, left:right], rtol=0, atol=1e-5)


def test_bounding_box() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    assert bounding_box(mask) is None
    mask[2, 3] = mask[6, 9] = True
    assert bounding_box(mask) == (3, 2, 10, 7)
