"""The vectorised Douglas-Peucker of the SR outlines: within tolerance, closed, as small as skimage's."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage
from skimage.measure import approximate_polygon, find_contours

from workers.dicom_out.polygon import corner_points, simplify
from workers.dicom_out.sr import outline_polygon

TOLERANCE = 0.4


def _blob(seed: int) -> NDArray[np.bool_]:
    """A smooth random blob, as the oedema of a slice looks."""
    noise = np.random.default_rng(seed).random((80, 90))
    smooth = ndimage.gaussian_filter(noise, 4.0)
    mask = smooth > np.percentile(smooth, 70)
    labels, _ = ndimage.label(mask)
    return np.asarray(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)


def _contour(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    contour: NDArray[np.float64] = max(find_contours(np.pad(mask.astype(np.float64), 1), 0.5), key=len)  # type: ignore[no-untyped-call]
    return contour


def _distance_to_chain(points: NDArray[np.float64], chain: NDArray[np.float64]) -> NDArray[np.float64]:
    a, d = chain[:-1], np.diff(chain, axis=0)
    t = ((points[:, None] - a[None]) * d[None]).sum(-1) / np.maximum((d * d).sum(-1), 1e-12)[None]
    nearest = a[None] + np.clip(t, 0, 1)[..., None] * d[None]
    distance: NDArray[np.float64] = np.sqrt(((points[:, None] - nearest) ** 2).sum(-1)).min(axis=1)
    return distance


@pytest.mark.parametrize("seed", range(8))
def test_every_contour_point_stays_within_the_tolerance(seed: int) -> None:
    contour = _contour(_blob(seed))
    simple = simplify(contour, TOLERANCE)
    assert np.array_equal(simple[0], contour[0]) and np.array_equal(simple[-1], contour[-1])  # still closed
    assert _distance_to_chain(contour, simple).max() <= TOLERANCE + 1e-9
    # the points kept are points of the contour, in its order
    positions = [int(np.flatnonzero((contour == p).all(axis=1))[0]) for p in simple[:-1]]
    assert positions == sorted(positions)


@pytest.mark.parametrize("seed", range(8))
def test_about_as_many_points_as_skimage_and_mostly_the_same(seed: int) -> None:
    """Same algorithm; only ties between equally far points (skimage's trigonometry rounds them apart)
    may be broken differently, which keeps a few points more or fewer."""
    contour = _contour(_blob(seed))
    ours, theirs = simplify(contour, TOLERANCE), approximate_polygon(contour, tolerance=TOLERANCE)  # type: ignore[no-untyped-call]
    assert abs(len(ours) - len(theirs)) <= 0.15 * len(theirs)
    assert len({tuple(p) for p in ours} & {tuple(p) for p in theirs}) >= 0.85 * len(theirs)


def test_dropping_straight_runs_changes_nothing() -> None:
    contour = _contour(_blob(3))
    assert len(corner_points(contour)) < len(contour)
    np.testing.assert_array_equal(simplify(corner_points(contour), TOLERANCE), simplify(contour, TOLERANCE))


def test_a_square_is_its_four_corners() -> None:
    mask = np.zeros((12, 12), dtype=bool)
    mask[2:9, 3:10] = True
    polygon = outline_polygon(mask)
    assert len(polygon) == 9  # the marching-squares outline cuts each corner: 8 points, closed
    assert polygon[:, 0].min() == 3.0 and polygon[:, 0].max() == 10.0  # columns 3..9 -> pixel edges 3..10
