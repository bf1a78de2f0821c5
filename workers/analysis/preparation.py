# mypy: disallow-untyped-calls=False
"""Preparation: bias-field correction, resampling onto a common grid, voxel coordinates in LPS.

All geometry is physical (LPS mm). Images of one study share a Frame of Reference, so
resampling with the identity transform places them correctly whatever their FOV, matrix,
slice positions or obliquity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

FloatArray = npt.NDArray[np.float32]


def _otsu_mask(image: sitk.Image) -> sitk.Image:
    smooth = sitk.SmoothingRecursiveGaussian(image, 2.0)
    mask = sitk.OtsuThreshold(smooth, 0, 1, 200)
    mask = sitk.BinaryMorphologicalClosing(mask, [2, 2, 1])
    out: sitk.Image = sitk.Cast(mask, sitk.sitkUInt8)
    return out


@dataclass(frozen=True)
class BiasCorrected:
    """An image and its N4 log bias field (on a shrunk grid); corrected on demand on any grid."""

    image: sitk.Image
    log_bias: sitk.Image
    transform: sitk.Transform | None = None  # grid point -> this image's point (a registration), None = identity

    def on(self, grid: sitk.Image) -> FloatArray:
        """The bias-corrected image resampled onto ``grid`` (patient space), float32 (z, y, x)."""
        tx = self.transform or sitk.Transform()
        raw = to_array(sitk.Resample(self.image, grid, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        log_bias = sitk.Resample(self.log_bias, grid, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32, True)
        out: FloatArray = (raw / np.exp(to_array(log_bias))).astype(np.float32)
        return out

    def registered(self, transform: sitk.Transform) -> BiasCorrected:
        """The same image, resampled through ``transform`` from now on."""
        return BiasCorrected(image=self.image, log_bias=self.log_bias, transform=transform)


@dataclass(frozen=True)
class Registration:
    """A rigid match of one series to another: how far it moved, and whether it is trusted."""

    transform: sitk.Transform
    shift_mm: float
    rotation_deg: float
    metric_before: float
    metric_after: float


def _mutual_information(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(0.2, seed=1)
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    return reg


def register_rigid(fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image) -> Registration:
    """Rigid (Euler 3-D) registration of ``moving`` to ``fixed`` by Mattes mutual information
    (different contrasts), inside ``mask``, on images shrunk by two. The transform maps ``fixed``
    points to ``moving`` points; the metric (lower is better) is reported before and after."""
    reg = _mutual_information(fixed, moving, mask)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.1, numberOfIterations=40,
                                                 relaxationFactor=0.5)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2])
    reg.SetSmoothingSigmasPerLevel([1.0])
    initial = sitk.Euler3DTransform()
    initial.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in fixed.GetSize()]))
    reg.SetInitialTransform(initial, inPlace=True)
    before = float(reg.MetricEvaluate(fixed, moving))
    reg.Execute(fixed, moving)
    result = sitk.Euler3DTransform(initial)
    check = _mutual_information(fixed, moving, mask)
    check.SetInitialTransform(result, inPlace=False)
    after = float(check.MetricEvaluate(fixed, moving))
    angles = np.degrees(np.abs(np.asarray(result.GetParameters()[:3], dtype=np.float64)))
    shift = float(np.linalg.norm(np.asarray(result.GetTranslation(), dtype=np.float64)))
    return Registration(transform=result, shift_mm=shift, rotation_deg=float(angles.max()),
                        metric_before=before, metric_after=after)


def fit_bias(image: sitk.Image, *, shrink_mm: float = 8.0, iterations: int = 6) -> BiasCorrected:
    """N4 bias-field fit on a shrunk copy of ``image``.

    Bounded in time: the fit sees voxels of about ``shrink_mm`` (a few 10^4 for a pelvis) and
    runs one fitting level of at most ``iterations``. The smooth log field is kept on the
    shrunk grid and interpolated only where the corrected image is needed.
    """
    image = sitk.Cast(image, sitk.sitkFloat32)
    spacing = image.GetSpacing()
    size = image.GetSize()
    factors = [max(1, min(int(round(shrink_mm / s)), max(1, n // 4))) for s, n in zip(spacing, size, strict=True)]
    small = sitk.Shrink(image, factors)
    # N4 works on log intensities: keep them strictly positive.
    small = sitk.Clamp(small, sitk.sitkFloat32, lowerBound=1e-3)
    mask = _otsu_mask(small)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([iterations])
    n4.SetConvergenceThreshold(1e-3)
    n4.Execute(small, mask)
    return BiasCorrected(image=image, log_bias=n4.GetLogBiasFieldAsImage(small))


def resample_onto(moving: sitk.Image, reference: sitk.Image, *, nearest: bool = False) -> sitk.Image:
    """Resample ``moving`` onto ``reference``'s grid in patient space (identity transform).

    Voxels of the reference outside the moving image's extent get 0.
    """
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    pixel = moving.GetPixelID() if nearest else sitk.sitkFloat32
    return sitk.Resample(moving, reference, sitk.Transform(), interpolator, 0.0, pixel)


def physical_corners(image: sitk.Image) -> npt.NDArray[np.float64]:
    """The 8 corner voxel centres of ``image`` in LPS mm, shape (8, 3)."""
    nx, ny, nz = image.GetSize()
    corners = [
        image.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k)))
        for i in (0, nx - 1)
        for j in (0, ny - 1)
        for k in (0, nz - 1)
    ]
    return np.asarray(corners, dtype=np.float64)


def axis_aligned_grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An empty float32 image with identity direction covering ``image``'s extent, isotropic spacing."""
    corners = physical_corners(image)
    lo = corners.min(axis=0)
    hi = corners.max(axis=0)
    size = [max(1, int(np.ceil((h - lo_) / spacing_mm)) + 1) for lo_, h in zip(lo, hi, strict=True)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetOrigin(tuple(float(v) for v in lo))
    grid.SetSpacing((spacing_mm,) * 3)
    grid.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return grid


@dataclass(frozen=True)
class Block:
    """A box of voxel indices of an image, [z0:z1, y0:y1, x0:x1] in numpy order."""

    z0: int
    z1: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return (slice(self.z0, self.z1), slice(self.y0, self.y1), slice(self.x0, self.x1))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z1 - self.z0, self.y1 - self.y0, self.x1 - self.x0)


def sub_image(image: sitk.Image, block: Block) -> sitk.Image:
    """An empty float32 image with the geometry of ``block`` of ``image``."""
    out = sitk.Image([block.x1 - block.x0, block.y1 - block.y0, block.z1 - block.z0], sitk.sitkFloat32)
    out.SetSpacing(image.GetSpacing())
    out.SetDirection(image.GetDirection())
    out.SetOrigin(image.TransformIndexToPhysicalPoint((block.x0, block.y0, block.z0)))
    return out


def block_around(image: sitk.Image, points_lps: list[tuple[float, float, float]], margin_mm: float) -> Block:
    """The index box of ``image`` that holds every point within ``margin_mm`` of ``points_lps``."""
    nx, ny, nz = image.GetSize()
    idx = []
    for p in points_lps:
        for dx in (-margin_mm, margin_mm):
            for dy in (-margin_mm, margin_mm):
                for dz in (-margin_mm, margin_mm):
                    q = (p[0] + dx, p[1] + dy, p[2] + dz)
                    idx.append(image.TransformPhysicalPointToContinuousIndex(q))
    arr = np.asarray(idx)
    lo = np.floor(arr.min(axis=0)).astype(int)
    hi = np.ceil(arr.max(axis=0)).astype(int) + 1
    x0, y0, z0 = (max(0, int(v)) for v in lo)
    x1, y1, z1 = (min(n, int(v)) for v, n in zip(hi, (nx, ny, nz), strict=True))
    return Block(z0=z0, z1=max(z0, z1), y0=y0, y1=max(y0, y1), x0=x0, x1=max(x0, x1))


def block_coordinates(image: sitk.Image, block: Block) -> tuple[FloatArray, FloatArray, FloatArray]:
    """LPS x, y, z (mm) of every voxel centre of ``block``, each shaped like the block (z, y, x)."""
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    matrix = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3) @ np.diag(image.GetSpacing())
    i = np.arange(block.x0, block.x1, dtype=np.float64)[None, None, :]
    j = np.arange(block.y0, block.y1, dtype=np.float64)[None, :, None]
    k = np.arange(block.z0, block.z1, dtype=np.float64)[:, None, None]
    out = []
    for c in range(3):
        comp = origin[c] + matrix[c, 0] * i + matrix[c, 1] * j + matrix[c, 2] * k
        out.append(np.broadcast_to(comp, block.shape).astype(np.float32))
    return out[0], out[1], out[2]


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in mL."""
    sx, sy, sz = image.GetSpacing()
    return float(sx * sy * sz) / 1000.0


def to_array(image: sitk.Image) -> FloatArray:
    """The image as a float32 (z, y, x) array (a copy)."""
    return sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32)).astype(np.float32, copy=False)


def like(array: npt.NDArray[np.generic], reference: sitk.Image) -> sitk.Image:
    """A SimpleITK image of ``array`` with ``reference``'s geometry."""
    img = sitk.GetImageFromArray(array)
    img.CopyInformation(reference)
    return img
