# mypy: disallow-untyped-calls=False
"""Signal levels of the study's own tissues around one hip: fat, muscle and free fluid.

Contrast differs by vendor, field strength, inversion time, fat-suppression method and coil, so
no absolute level is assumed. Around each hip (outside its femur) the T1 gives fat and muscle
(``tissue_levels``); the fluid-sensitive levels are the medians over the voxels whose T1 is pure
fat or pure muscle. Without a T1 the fluid-sensitive series alone gives muscle and fat. Free
fluid is the brightest percentile of the body (bladder, joint fluid).

Every later threshold is a position on these scales:
``u = (fluid - fat) / (muscle - fat)`` (0 = fat, 1 = muscle on the fluid-sensitive series) and
``v = (T1 - muscle) / (fat - muscle)`` (0 = muscle, 1 = fat on the T1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.filters import threshold_otsu

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]

MIN_CLASS_VOXELS = 200
MODE_BAND = 0.12  # voxels within this fraction of the fat-muscle T1 gap from a class mode are "pure"
NOISE_TARGET = 0.06  # smoothed noise (robust SD in muscle / muscle level) the analysis works at
SMOOTHING_STEPS_PX = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


class TissueError(ValueError):
    """The tissues around a hip could not be told apart (too few voxels, no contrast)."""


@dataclass(frozen=True)
class TissueLevels:
    """Fat, muscle and free-fluid signal around one hip (bias-corrected units of each series)."""

    fluid_fat: float
    fluid_muscle: float
    fluid_free: float | None  # free fluid (bladder, effusion) on the fluid-sensitive series, if seen
    t1_fat: float | None
    t1_muscle: float | None
    fat_voxels: int
    muscle_voxels: int
    fluid_smoothing_px: float = 0.5  # in-plane Gaussian sigma that brings muscle noise to ``NOISE_TARGET``
    t1_smoothing_px: float = 0.5

    @property
    def fat_suppression_ratio(self) -> float:
        """Fat / muscle on the fluid-sensitive series: well below 1 when fat suppression works."""
        return self.fluid_fat / self.fluid_muscle

    def u(self, fluid: FloatArray) -> FloatArray:
        """Fluid-sensitive signal on the fat (0) to muscle (1) scale."""
        out: FloatArray = ((fluid - np.float32(self.fluid_fat)) /
                           np.float32(max(self.fluid_muscle - self.fluid_fat, 1e-6))).astype(np.float32)
        return out

    def u_level(self, u: float) -> float:
        """The fluid-sensitive intensity at position ``u`` of the fat-muscle scale."""
        return self.fluid_fat + u * (self.fluid_muscle - self.fluid_fat)

    def v(self, t1: FloatArray) -> FloatArray | None:
        """T1 signal on the muscle (0) to fat (1) scale; None without T1 levels."""
        if self.t1_fat is None or self.t1_muscle is None:
            return None
        out: FloatArray = ((t1 - np.float32(self.t1_muscle)) /
                           np.float32(max(self.t1_fat - self.t1_muscle, 1e-6))).astype(np.float32)
        return out


def _mode(values: FloatArray, bins: int = 128) -> float:
    """The most frequent value (histogram mode, lightly smoothed)."""
    lo, hi = np.percentile(values, [1, 99])
    if hi <= lo:
        return float(np.median(values))
    hist, edges = np.histogram(values, bins=bins, range=(float(lo), float(hi)))
    smooth = np.convolve(hist.astype(np.float64), np.array([1, 2, 3, 2, 1], dtype=np.float64) / 9.0, mode="same")
    k = int(np.argmax(smooth))
    return float(0.5 * (edges[k] + edges[k + 1]))


def tissue_levels(fluid: FloatArray, t1: FloatArray | None, sample: BoolArray,
                  free_fluid: float | None) -> TissueLevels:
    """Tissue levels from the voxels of ``sample`` (body around one hip, femur excluded).

    With a T1: Otsu splits fat (bright) from the rest; muscle is the mode of the rest (it is the
    most common soft tissue around a hip; cortex, vessels and fluid are its dark tail) and fat the
    upper quartile of the bright class (pure fat, not the partial-volume edge of fat planes).
    Without one: muscle is the mode of the fluid-sensitive signal and fat the mode of what is
    clearly darker than muscle. Raises ``TissueError`` when the classes cannot be found.
    """
    if int(sample.sum()) < 3 * MIN_CLASS_VOXELS:
        raise TissueError(f"too little tissue around the hip ({int(sample.sum())} voxels)")
    if t1 is not None:
        values = t1[sample]
        split = float(threshold_otsu(values))
        bright, rest = values[values > split], values[values <= split]
        if bright.size < MIN_CLASS_VOXELS or rest.size < MIN_CLASS_VOXELS:
            raise TissueError("no fat or no muscle around the hip on the T1")
        muscle_t1 = _mode(rest)
        fat_t1 = float(np.percentile(bright, 75))
        if fat_t1 <= muscle_t1 * 1.2:
            raise TissueError("no fat-muscle contrast on the T1")
        band = MODE_BAND * (fat_t1 - muscle_t1)
        fat = sample & (np.abs(t1 - np.float32(fat_t1)) <= band)
        muscle = sample & (np.abs(t1 - np.float32(muscle_t1)) <= band)
        if int(fat.sum()) < MIN_CLASS_VOXELS or int(muscle.sum()) < MIN_CLASS_VOXELS:
            raise TissueError("too few fat or muscle voxels on the T1")
        fluid_fat = float(np.median(fluid[fat]))
        fluid_muscle = float(np.median(fluid[muscle]))
        n_fat, n_muscle = int(fat.sum()), int(muscle.sum())
        t1_levels: tuple[float | None, float | None] = (fat_t1, muscle_t1)
    else:
        values = fluid[sample]
        fluid_muscle = _mode(values)
        darker = values[values < np.float32(0.8 * fluid_muscle)]
        if darker.size < MIN_CLASS_VOXELS:
            raise TissueError("no suppressed fat darker than muscle on the fluid-sensitive series")
        fluid_fat = _mode(darker)
        muscle = sample & (np.abs(fluid - np.float32(fluid_muscle)) <= np.float32(0.3 * fluid_muscle))
        n_fat, n_muscle = int(darker.size), int(muscle.sum())
        t1_levels = (None, None)
    if fluid_muscle <= 0:
        raise TissueError("muscle has no signal on the fluid-sensitive series")
    free = free_fluid if (free_fluid is not None and free_fluid > 1.5 * fluid_muscle) else None
    # noise is measured in muscle chosen on a smoothed image (choosing on the raw one truncates the noise)
    if t1 is not None and t1_levels[0] is not None and t1_levels[1] is not None:
        band_t1 = MODE_BAND * (t1_levels[0] - t1_levels[1])
        muscle = sample & (np.abs(ndimage.gaussian_filter(t1, (0.0, 2.0, 2.0)) - np.float32(t1_levels[1])) <= band_t1)
    else:
        muscle = sample & (np.abs(ndimage.gaussian_filter(fluid, (0.0, 2.0, 2.0)) - np.float32(fluid_muscle))
                           <= np.float32(0.15 * fluid_muscle))
    return TissueLevels(fluid_fat=fluid_fat, fluid_muscle=fluid_muscle, fluid_free=free,
                        t1_fat=t1_levels[0], t1_muscle=t1_levels[1], fat_voxels=n_fat, muscle_voxels=n_muscle,
                        fluid_smoothing_px=smoothing_for(fluid, muscle, fluid_muscle),
                        t1_smoothing_px=(smoothing_for(t1, muscle, t1_levels[1])
                                         if t1 is not None and t1_levels[1] is not None else 0.5))


def smoothing_for(image: FloatArray, muscle: BoolArray, level: float) -> float:
    """The smallest in-plane Gaussian sigma (pixels) after which the noise in ``muscle`` (robust SD
    over its level) is at most ``NOISE_TARGET``: noisy, low-SNR series are smoothed more."""
    if int(muscle.sum()) < MIN_CLASS_VOXELS or level <= 0:
        return SMOOTHING_STEPS_PX[0]
    inner = ndimage.binary_erosion(muscle, structure=np.ones((1, 5, 5), dtype=bool))
    if int(inner.sum()) < MIN_CLASS_VOXELS:
        inner = muscle
    for sigma in SMOOTHING_STEPS_PX:
        values = ndimage.gaussian_filter(image, (0.0, sigma, sigma))[inner]
        spread = 1.4826 * float(np.median(np.abs(values - np.median(values))))
        if spread / level <= NOISE_TARGET:
            return sigma
    return SMOOTHING_STEPS_PX[-1]


def free_fluid_level(fluid: FloatArray, body: BoolArray, t1: FloatArray | None) -> float | None:
    """Free fluid (bladder, joint fluid) on the fluid-sensitive series: the 99.7th percentile of the
    body, among T1-dark voxels when a T1 is given (fluid is darker than muscle on T1)."""
    inside = body
    if t1 is not None and body.any():
        level = float(np.percentile(t1[body], 40))
        inside = body & (t1 <= level)
    if int(inside.sum()) < MIN_CLASS_VOXELS:
        return None
    return float(np.percentile(fluid[inside], 99.7))
