"""Parameters of the oedema analysis: every threshold in one frozen, documented place.

Signal thresholds are positions on the study's own tissue scales (fat, muscle, free fluid; see
``tissues.py``), never absolute intensities; sizes follow ../shared/docs/DOMAIN.md section 2
(femoral-head radius 18-30 mm, head separation 150-210 mm). They are checked on two independently
written phantoms (benchmarks/accuracy.py).
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
    registration_still_mm: float = 1.5  # a T1 within this shift ...
    registration_still_deg: float = 1.5  # ... and rotation of the fluid-sensitive series is left as it is
    registration_max_mm: float = 25.0  # larger registrations are not trusted (T1 not used)
    registration_max_deg: float = 10.0
    registration_min_gain: float = 0.02  # the mutual information must improve by this fraction
    # anatomy
    head_radius_min_mm: float = 18.0
    head_radius_max_mm: float = 30.0
    head_separation_min_mm: float = 150.0
    head_separation_max_mm: float = 210.0
    head_pair_tilt_max_deg: float = 12.0  # the line between the heads leans at most this (pelvic obliquity, rotation)
    midline_tolerance_mm: float = 25.0  # |mid-point of the heads - body centre| (symmetry gate)
    head_edge_coherence_min: float = 0.45  # sphericity: fraction of rays whose edge lies on one sphere
    head_edge_coherence_min_no_t1: float = 0.3  # on a fluid-sensitive series alone (no edge against the acetabulum)
    cortex_mm: float = 2.0  # head radius = marrow edge on T1 + cortex and edge blur (calibrated on the phantom)
    neck_shaft_angle_deg: float = 130.0
    neck_length_mm: float = 22.0  # average neck length beyond the head surface, when no shaft is found
    neck_base_margin_mm: float = 8.0  # the neck ends this far before its base on the shaft axis
    intertrochanteric_radius_mm: float = 30.0  # intertrochanteric region: marrow within this of the neck base
    # marrow segmentation (marrow.py)
    envelope_margin_mm: float = 4.0  # the femur envelope reaches this far beyond the fitted head and neck
    shaft_envelope_radius_mm: float = 22.0  # and this far around the shaft axis
    trochanter_envelope_radius_mm: float = 46.0  # and this far around the neck base (both trochanters)
    head_cap_margin_mm: float = 1.0  # head marrow never lies further than this outside the fitted sphere
    cortex_brightness_max: float = 0.15  # darker than this x fat (T1) and x muscle (fluid) = cortex or air
    # oedema (oedema.py): positions on the study's own fat-muscle scales (tissues.py)
    core_u_min: float = 1.3  # core: fluid-sensitive signal at least this on the fat (0) - muscle (1) scale (mean)
    core_u_weak: float = 1.1  # ... over a connected region that is at least this everywhere
    core_v_max: float = 0.75  # and T1 at most this on the muscle (0) - fat (1) scale
    plateau_mm: float = 6.0  # the lesion's local plateau: core signal averaged over about this distance
    outline_fraction: float = 0.5  # outline: this far from fat to the local plateau (half maximum)
    min_component_mm3: float = 50.0
    min_component_voxels: int = 3  # and never fewer voxels than this (coarse grids)
    present_min_ml: float = 1.0  # less oedema than this is reported as "no oedema"
    # effusion (measure.py)
    effusion_shell_mm: float = 12.0
    effusion_level_fraction: float = 0.5  # fluid: halfway from muscle to the study's free fluid
    effusion_muscle_multiple: float = 2.5  # or this x muscle when no free fluid is in view
    effusion_distension_mm: float = 3.0  # a distended capsule holds a fluid layer at least this thick
    effusion_min_ml: float = 3.0  # and holds at least this much fluid (physiological joint fluid is less)
    # pattern (measure.py)
    diffuse_head_pct_min: float = 20.0  # diffuse: head and neck involved ...
    diffuse_neck_pct_min: float = 10.0
    diffuse_head_only_pct_min: float = 50.0  # ... or most of the head
    subchondral_mm: float = 4.0  # a focal lesion reaches within this of the head surface
    focal_head_share_min: float = 0.7  # and lies mostly in the head
    focal_head_pct_max: float = 40.0  # and involves less of the head than this
    band_fraction_min: float = 0.3
    # quality guards
    ghost_prominence_min: float = 0.15  # autocorrelation peak of periodic replicas along an image axis: motion
    fat_sat_ratio_max: float = 1.0  # fat / muscle on the fluid-sensitive series around a hip: more = failed
    shaft_check_below_mm: float = 20.0  # the femoral shaft's (yellow) marrow this far below the neck base ...
    shaft_check_min_ml: float = 2.0  # ... when at least this much of it is in view ...
    shaft_u_max: float = 0.8  # ... brighter than this on the fat-muscle scale: suppression failed or marrow replaced

    def as_strings(self) -> dict[str, str]:
        """The parameters as strings, for ``AnalysisResult.algorithm.parameters``."""
        return {name: str(value) for name, value in asdict(self).items()}
