"""MR protocols of the phantom studies and how each vendor spells them in the headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.phantom.tissue import SequenceTiming

VENDORS = ("generic", "siemens", "ge", "philips")


@dataclass(frozen=True)
class Protocol:
    """One acquired series: contrast, plane, timing and the header spellings of its vendor."""

    key: str  # "t1_cor" | "stir_cor" | "t2fs_ax" | "t1_ax" | "stir_ax" | "pdfs_cor" | "dixon_water_cor" | ...
    contrast: str  # "t1" | "stir" | "t2fs" | "pdfs" | "dixon_water" | "dixon_fat"
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
    acquisition_type: str = "2D"  # MRAcquisitionType: "2D" slices or a "3D" slab


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
PDFS_3D = SequenceTiming("fs", tr_ms=1600.0, te_ms=35.0, fat_suppression=0.95)
DIXON_WATER = SequenceTiming("se", tr_ms=4000.0, te_ms=80.0, dixon="water")
DIXON_FAT = SequenceTiming("se", tr_ms=4000.0, te_ms=80.0, dixon="fat")
#: Contrasts that are fluid-sensitive and fat-suppressed (the series the oedema truth is drawn on).
FLUID_CONTRASTS = ("stir", "t2fs", "pdfs", "dixon_water")


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


def pd_fs_3d_protocol(vendor: str, series_number: int) -> Protocol:
    """A coronal isotropic 3D PD fat-suppressed turbo spin echo (SPACE / CUBE / VISTA).

    Variable-flip-angle 3D TSE: a long echo train (``EchoTrainLength`` 48), ``MRAcquisitionType``
    3D, spectral fat saturation (``FS``), TR 1600 ms and TE 35 ms (PD-weighted at long TR).
    """
    names = _3D_SPELLINGS[vendor]
    return Protocol(
        key="pdfs_cor", contrast="pdfs", plane="coronal", timing=PDFS_3D, series_number=series_number,
        description=names["desc"], protocol_name=names["desc"],
        scanning_sequence=("SE",), sequence_variant=tuple(names["sv"].split("\\")),
        scan_options=tuple(names["so"].split("\\")), sequence_name=names["name"],
        echo_train_length=48, flip_angle=120.0, pixel_bandwidth=500.0, snr=16.0,
        image_type=tuple(names["itype"].split("\\")), acquisition_type="3D",
    )


def dixon_protocols(vendor: str, series_number: int) -> tuple[Protocol, Protocol]:
    """The water and fat images of a coronal two-point Dixon T2 TSE (series ``n`` and ``n + 1``).

    No spectral fat saturation: the water image is fat-free by water-fat separation.
    ``ImageType`` is ``DERIVED\\PRIMARY\\DIXON\\WATER`` / ``...\\FAT`` as Siemens writes it.
    """
    names = _DIXON_SPELLINGS[vendor]
    out = []
    for i, (part, timing) in enumerate((("water", DIXON_WATER), ("fat", DIXON_FAT))):
        desc = names[part]
        out.append(Protocol(
            key=f"dixon_{part}_cor", contrast=f"dixon_{part}", plane="coronal", timing=timing,
            series_number=series_number + i, description=desc, protocol_name=names["prot"],
            scanning_sequence=("SE",), sequence_variant=("SK", "SP", "OSP"), scan_options=(),
            sequence_name=names["name"], echo_train_length=15, flip_angle=150.0, pixel_bandwidth=300.0,
            snr=22.0, image_type=("DERIVED", "PRIMARY", "DIXON", part.upper()),
        ))
    return out[0], out[1]


_3D_SPELLINGS: dict[str, dict[str, str]] = {
    "generic": {"desc": "COR PD FS 3D ISO", "sv": "SK\\SP", "so": "FS", "name": "tse3d",
                "itype": "ORIGINAL\\PRIMARY\\OTHER"},
    "siemens": {"desc": "pd_space_fs_cor_iso", "sv": "SK\\SP\\OSP", "so": "PFP\\FS", "name": "*spc3d1rr48",
                "itype": "ORIGINAL\\PRIMARY\\M\\ND\\NORM"},
    "ge": {"desc": "COR PD CUBE FS", "sv": "SK", "so": "FAST_GEMS\\EDR_GEMS\\FS", "name": "Cube",
           "itype": "ORIGINAL\\PRIMARY\\OTHER"},
    "philips": {"desc": "PDW_SPAIR_VISTA_COR", "sv": "SK", "so": "FS", "name": "TSE",
                "itype": "ORIGINAL\\PRIMARY\\OTHER"},
}

_DIXON_SPELLINGS: dict[str, dict[str, str]] = {
    "generic": {"water": "COR T2 DIXON W", "fat": "COR T2 DIXON F", "prot": "HIP COR T2 DIXON",
                "name": "tse2d"},
    "siemens": {"water": "t2_tse_dixon_cor_W", "fat": "t2_tse_dixon_cor_F", "prot": "t2_tse_dixon_cor",
                "name": "*tse2d1_15"},
    "ge": {"water": "WATER: COR T2 FLEX", "fat": "FAT: COR T2 FLEX", "prot": "HIP/PELVIS", "name": "fse"},
    "philips": {"water": "T2W_mDIXON_COR_W", "fat": "T2W_mDIXON_COR_F", "prot": "T2W_mDIXON_COR",
                "name": "TSE"},
}
