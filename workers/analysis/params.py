"""Parameters of the oedema analysis: every threshold in one frozen, documented place.

Values follow ../shared/docs/DOMAIN.md sections 1.3 and 2 (Hepburn Q3 + k*IQR, SIR >= 1.3-1.5,
T1 ratio <= 0.7-0.8, femoral-head radius 18-30 mm, head separation 150-210 mm) and were
calibrated on the synthetic phantom over several seeds (benchmarks/accuracy.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AnalysisParameters:
    """Thresholds and sizes; lengths in mm, volumes in mL, ratios relative to reference marrow."""

    # preparation
    working_spacing_mm: float = 2.0  # isotropic grid used to find the femoral heads
    n4_shrink_mm: float = 8.0  # N4 runs on an image shrunk to about this voxel size
    n4_iterations: int = 4  # one fitting level (time bound)
    # anatomy
    head_radius_min_mm: float = 18.0
    head_radius_max_mm: float = 30.0
    head_separation_min_mm: float = 150.0
    head_separation_max_mm: float = 210.0
    head_craniocaudal_tolerance_mm: float = 15.0
    head_ap_tolerance_mm: float = 20.0
    midline_tolerance_mm: float = 25.0  # |mid-point of the heads - body centre| (symmetry gate)
    head_edge_coherence_min: float = 0.45  # sphericity: fraction of rays whose edge lies on one sphere
    cortex_mm: float = 2.0  # head radius = marrow edge on T1 + cortex and edge blur (calibrated on the phantom)
    neck_shaft_angle_deg: float = 130.0
    neck_length_mm: float = 22.0  # average neck length beyond the head surface, when no shaft is found
    neck_base_margin_mm: float = 8.0  # the neck ends this far before its base on the shaft axis
    intertrochanteric_radius_mm: float = 30.0  # intertrochanteric region: bone within this of the neck base
    marrow_t1_min: float = 0.42  # marrow-like: T1 >= this x subcutaneous-fat T1 (excludes muscle, cortex)
    head_t1_min: float = 0.3  # inside the head sphere only cartilage and fluid (darker) are excluded
    region_erosion_mm: float = 1.0  # inside the head radius (which already counts ~1.5 mm of cortex)
    neck_envelope_mm: float = 12.0  # with a T1, neck marrow is searched this far outside the neck cylinder
    # reference and thresholds
    iqr_k: float = 2.0  # Hepburn: candidate if I >= Q3 + k*IQR of the reference marrow
    sir_min: float = 1.4  # and I / median(reference) >= this
    t1_ratio_max: float = 0.8  # a lesion's median T1 / median(reference T1) must be <= this (with a T1)
    t1_fatty_min: float = 0.95  # voxels with T1 above this x reference stay fatty marrow, never oedema
    boundary_fraction: float = 0.5  # lesion outline: this far from the reference to the lesion's peak
    peak_percentile: float = 75.0  # the lesion's plateau: this percentile of the seed voxels
    affected_fraction: float = 0.08  # a side whose ROI exceeds the shaft threshold in more voxels is "affected"
    muscle_sir_min: float = 1.3  # muscle fallback: marrow / muscle on the fluid-sensitive series
    min_component_mm3: float = 50.0
    min_component_voxels: int = 3  # and never fewer voxels than this (coarse grids)
    present_min_ml: float = 1.0  # less oedema than this is reported as "no oedema"
    # effusion
    effusion_shell_mm: float = 12.0
    effusion_sir_min: float = 3.0  # fluid-bright: I / median(reference marrow)
    effusion_level_fraction: float = 0.25  # and this far from muscle to the free-fluid peak (bladder)
    effusion_present_min_ml: float = 1.0
    # pattern
    diffuse_neck_pct_min: float = 20.0
    focal_depth_mm: float = 15.0  # a focal lesion's median depth under the head surface is at most this
    focal_head_pct_max: float = 40.0  # and it involves less of the head than this
    band_fraction_min: float = 0.3
    # quality guards
    ghost_ratio_max: float = 3.0  # smoothed air signal (95th pct) / noise floor over a hip: more = motion/wrap
    ghost_prominence_min: float = 0.15  # autocorrelation peak of periodic replicas along an image axis: motion
    fat_sat_ratio_max: float = 1.0  # fat around the hip (75th percentile) / muscle on the fluid-sensitive series

    def as_strings(self) -> dict[str, str]:
        """The parameters as strings, for ``AnalysisResult.algorithm.parameters``."""
        return {name: str(value) for name, value in asdict(self).items()}
