"""Percentiles from the histogram of whole-numbered pixel values are numpy's percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from workers.dicom_out.levels import Levels

QS = (0.0, 0.5, 1.0, 37.3, 50.0, 99.0, 99.5, 100.0)


@pytest.mark.parametrize("seed", range(20))
def test_percentiles_equal_numpys(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(-40, int(rng.integers(1, 3000)), int(rng.integers(1, 4000))).astype(np.float64)
    levels = Levels.of(values)
    assert levels is not None and levels.size == values.size
    for q in QS:
        assert levels.percentile(q) == float(np.percentile(values, q))
    threshold = float(rng.uniform(-50, 100))
    above = values[values > threshold]
    if above.size:
        assert levels.above(threshold).size == above.size
        for q in QS:
            assert levels.above(threshold).percentile(q) == float(np.percentile(above, q))
    else:
        assert levels.above(threshold).size == 0


def test_float32_pixels_as_the_overlays_have_them() -> None:
    values = np.random.default_rng(0).integers(0, 1200, (30, 64, 64)).astype(np.float32).ravel()
    levels = Levels.of(values)
    assert levels is not None
    # numpy interpolates float32 data in float32: equal up to float32 rounding
    for q in QS:
        assert levels.percentile(q) == pytest.approx(float(np.percentile(values, q)), rel=1e-6)


@pytest.mark.parametrize("values", [np.array([1.0, 2.5]), np.array([1.0, np.nan]), np.array([0.0, np.inf]),
                                    np.array([0.0, 2e6]), np.array([3e9, 3e9 + 1]), np.array([], dtype=np.float64)])
def test_no_histogram_for_fractions_nan_infinities_or_wide_ranges(values: np.ndarray) -> None:
    assert Levels.of(values) is None
