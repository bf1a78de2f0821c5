"""MR protocols of the phantom studies and how each vendor spells them in the headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.phantom.tissue import SequenceTiming

VENDORS = ("generic", "siemens", "ge", "philips")


@dataclass(frozen=True)
class Protocol:
    """One acquired series: contrast, plane, timing and the header spellings of its vendor."""

    key: str  # "t1_cor" | "stir_cor" | "t2fs_ax" | "t1_ax"
    contrast: str  # "t1" | "stir" | "t2fs"
    plane: str  # "coronal" | "axial"
    timing: SequenceTiming
    series_number: int
    description: str
    protocol_name: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    sequence_name: str
    echo_train_length: int
    flip_angle: float
    pixel_bandwidth: float
    snr: float
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "OTHER")
    rescale: tuple[float, float] | None = None  # (slope, intercept) written by Philips
    extra: dict[str, str] = field(default_factory=dict)
    phase_encoding: str = "ROW"  # InPlanePhaseEncodingDirection
    percent_phase_fov: float = 100.0  # phase field of view / frequency field of view, percent


@dataclass(frozen=True)
class Equipment:
    manufacturer: str
    model: str
    software: str
    station: str
    coil: str


EQUIPMENT = {
    "generic": Equipment("MarrowMap Phantom", "Virtual 1.5T", "phantom 1", "PHANTOM1", "BODY"),
    "siemens": Equipment("SIEMENS", "Avanto_fit", "syngo MR E11", "AWP45123", "Body_18"),
    "ge": Equipment("GE MEDICAL SYSTEMS", "Optima MR450w", "27\\LX\\MR Software release:DV26.0_R03",
                    "GEMR450W", "GEM Flex Large"),
    "philips": Equipment("Philips Medical Systems", "Ingenia", "5.7.1\\5.7.1.2", "PHILIPS-7X2K",
                         "dS Torso"),
}

T1 = SequenceTiming("se", tr_ms=560.0, te_ms=11.0)
STIR = SequenceTiming("stir", tr_ms=4800.0, te_ms=38.0, ti_ms=160.0)
T2FS = SequenceTiming("fs", tr_ms=4100.0, te_ms=72.0, fat_suppression=0.95)


def protocol(contrast: str, plane: str, vendor: str, series_number: int) -> Protocol:
    """The protocol of one series in the vendor's spelling."""
    if vendor not in VENDORS:
        raise ValueError(f"unknown vendor {vendor!r}; expected one of {VENDORS}")
    key = f"{contrast}_{'cor' if plane == 'coronal' else 'ax'}"
    spelling = _SPELLINGS[vendor][contrast]
    timing = {"t1": T1, "stir": STIR, "t2fs": T2FS}[contrast]
    p = _PLANE_WORD[vendor][plane]
    return Protocol(
        key=key, contrast=contrast, plane=plane, timing=timing, series_number=series_number,
        description=spelling["desc"].format(p=p), protocol_name=spelling["prot"].format(p=p),
        scanning_sequence=tuple(spelling["ss"].split("\\")),
        sequence_variant=tuple(spelling["sv"].split("\\")),
        scan_options=tuple(s for s in spelling["so"].split("\\") if s),
        sequence_name=spelling["name"],
        echo_train_length={"t1": 3, "stir": 11, "t2fs": 15}[contrast],
        flip_angle={"t1": 90.0, "stir": 150.0, "t2fs": 150.0}[contrast],
        pixel_bandwidth={"t1": 190.0, "stir": 250.0, "t2fs": 220.0}[contrast],
        snr={"t1": 32.0, "stir": 20.0, "t2fs": 26.0}[contrast],
        image_type=tuple(spelling.get("itype", "ORIGINAL\\PRIMARY\\OTHER").split("\\")),
        rescale=(1.62, 0.0) if vendor == "philips" else None,
    )


_PLANE_WORD = {
    "generic": {"coronal": "COR", "axial": "AX"},
    "siemens": {"coronal": "cor", "axial": "tra"},
    "ge": {"coronal": "COR", "axial": "AX"},
    "philips": {"coronal": "COR", "axial": "TRA"},
}

_SPELLINGS: dict[str, dict[str, dict[str, str]]] = {
    "generic": {
        "t1": {"desc": "{p} T1 TSE", "prot": "HIP {p} T1", "ss": "SE", "sv": "SK\\SP", "so": "",
               "name": "tse2d"},
        "stir": {"desc": "{p} STIR", "prot": "HIP {p} STIR", "ss": "SE\\IR", "sv": "SK\\SP\\MP",
                 "so": "IR", "name": "tir2d"},
        "t2fs": {"desc": "{p} T2 FS", "prot": "HIP {p} T2 FS", "ss": "SE", "sv": "SK\\SP",
                 "so": "FS", "name": "tse2d"},
    },
    "siemens": {
        "t1": {"desc": "t1_tse_{p}", "prot": "t1_tse_{p}", "ss": "SE", "sv": "SK\\SP\\OSP",
               "so": "", "name": "*tse2d1_3", "itype": "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D"},
        "stir": {"desc": "tirm_{p}_p2", "prot": "tirm_{p}_p2", "ss": "IR", "sv": "SK\\SP\\MP\\OSP",
                 "so": "IR", "name": "*tir2d1_11",
                 "itype": "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D"},
        "t2fs": {"desc": "t2_tse_fs_{p}", "prot": "t2_tse_fs_{p}", "ss": "SE",
                 "sv": "SK\\SP\\OSP", "so": "SAT1\\FS", "name": "*tse2d1_15",
                 "itype": "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D"},
    },
    "ge": {
        "t1": {"desc": "{p} T1 FSE", "prot": "HIP/PELVIS", "ss": "SE", "sv": "SK",
               "so": "FAST_GEMS\\FILTERED_GEMS", "name": "fse"},
        "stir": {"desc": "{p} STIR", "prot": "HIP/PELVIS", "ss": "SE\\IR", "sv": "SK\\OSP",
                 "so": "IR_GEMS\\FAST_GEMS\\FILTERED_GEMS", "name": "fse-ir"},
        "t2fs": {"desc": "{p} T2 FSE FS", "prot": "HIP/PELVIS", "ss": "SE", "sv": "SK",
                 "so": "SAT_GEMS\\FAST_GEMS\\FILTERED_GEMS\\FS", "name": "fse"},
    },
    "philips": {
        "t1": {"desc": "T1W_TSE_{p}", "prot": "T1W_TSE_{p}", "ss": "SE", "sv": "SK", "so": "",
               "name": "TSE"},
        "stir": {"desc": "STIR_{p}", "prot": "STIR_{p}", "ss": "IR", "sv": "SK", "so": "",
                 "name": "IR_TSE"},
        "t2fs": {"desc": "T2W_SPAIR_{p}", "prot": "T2W_SPAIR_{p}", "ss": "SE", "sv": "SK",
                 "so": "FS", "name": "TSE"},
    },
}
