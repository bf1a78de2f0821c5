"""Write phantom series as DICOM Part 10 files: classic MR Image and Enhanced MR Image.

Everything written is a function of its inputs (UIDs derived from names, fixed
dates), so the same request gives byte-identical files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from workers.phantom.cases import PatientIdentity
from workers.phantom.geometry import SeriesGeometry
from workers.phantom.protocols import EQUIPMENT, Protocol

UID_NAMESPACE = "marrowmap-phantom-v1"
BITS_STORED = 12


def derive_uid(*parts: object) -> UID:
    """A UID derived from names only (same parts, same UID)."""
    return generate_uid(entropy_srcs=[UID_NAMESPACE, *map(str, parts)])


@dataclass(frozen=True)
class StudyMeta:
    """Header content shared by every instance of one study."""

    study_uid: str
    frame_of_reference_uid: str
    study_date: str
    study_time: str
    accession: str
    study_id: str
    identity: PatientIdentity
    vendor: str
    patient_position: str  # "HFS" | "FFS"
    body_part: str  # "HIP" | "PELVIS"
    uid_parts: tuple[str, ...]  # entropy for instance UIDs


def _ds(v: float) -> str:
    """A decimal string of at most 16 characters."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s[:16]


def folder_name(proto: Protocol) -> str:
    """Series folder: number and description, safe for file systems."""
    return f"{proto.series_number:03d}_" + re.sub(r"[^A-Za-z0-9]+", "_", proto.description).strip("_")


def _patient_and_study(ds: Dataset, meta: StudyMeta) -> None:
    ident = meta.identity
    ds.SpecificCharacterSet = ident.charset
    ds.PatientName = ident.name
    ds.PatientID = ident.patient_id
    ds.IssuerOfPatientID = ident.issuer
    ds.PatientBirthDate = ident.birth_date
    ds.PatientSex = ident.sex
    age = int(meta.study_date[:4]) - int(ident.birth_date[:4])
    if meta.study_date[4:] < ident.birth_date[4:]:
        age -= 1
    ds.PatientAge = f"{age:03d}Y"
    ds.PatientWeight = "68"
    ds.StudyInstanceUID = meta.study_uid
    ds.StudyDate = meta.study_date
    ds.StudyTime = meta.study_time
    ds.ReferringPhysicianName = "REFERRER^PHANTOM"
    ds.StudyID = meta.study_id
    ds.AccessionNumber = meta.accession
    ds.StudyDescription = "MRI HIPS BOTH" if meta.body_part == "PELVIS" else "MRI HIP"
    eq = EQUIPMENT[meta.vendor]
    ds.Manufacturer = eq.manufacturer
    ds.ManufacturerModelName = eq.model
    ds.SoftwareVersions = eq.software
    ds.StationName = eq.station
    ds.InstitutionName = "MarrowMap Synthetic Hospital"
    ds.DeviceSerialNumber = "1500"


def _series(ds: Dataset, meta: StudyMeta, proto: Protocol, series_uid: str, series_time: str) -> None:
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = proto.series_number
    ds.SeriesDate = meta.study_date
    ds.SeriesTime = series_time
    ds.SeriesDescription = proto.description
    ds.ProtocolName = proto.protocol_name
    ds.BodyPartExamined = meta.body_part
    ds.PatientPosition = meta.patient_position
    ds.FrameOfReferenceUID = meta.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def _mr_acquisition(ds: Dataset, proto: Protocol, geo: SeriesGeometry, coil: str) -> None:
    t = proto.timing
    ds.ScanningSequence = list(proto.scanning_sequence)
    ds.SequenceVariant = list(proto.sequence_variant)
    ds.ScanOptions = list(proto.scan_options) if proto.scan_options else ""
    ds.MRAcquisitionType = proto.acquisition_type
    ds.SequenceName = proto.sequence_name
    ds.RepetitionTime = _ds(t.tr_ms)
    ds.EchoTime = _ds(t.te_ms)
    if t.kind == "stir":
        ds.InversionTime = _ds(t.ti_ms)
    ds.EchoTrainLength = proto.echo_train_length
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "63.676"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = "1.5"
    ds.SliceThickness = _ds(geo.thickness)
    ds.SpacingBetweenSlices = _ds(geo.spacing)
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = _ds(proto.percent_phase_fov)
    ds.PixelBandwidth = _ds(proto.pixel_bandwidth)
    ds.FlipAngle = _ds(proto.flip_angle)
    acq_rows = min(geo.rows, 320)
    acq_cols = min(geo.cols, 320)
    if proto.phase_encoding == "ROW":  # frequency rows\frequency columns\phase rows\phase columns
        ds.AcquisitionMatrix = [0, acq_cols, int(acq_rows * 0.8), 0]
    else:
        ds.AcquisitionMatrix = [acq_rows, 0, 0, int(acq_cols * 0.8)]
    ds.InPlanePhaseEncodingDirection = proto.phase_encoding
    ds.ReceiveCoilName = coil
    ds.TransmitCoilName = "BODY"
    ds.SAR = "1.2"
    ds.dBdt = "0"


def _pixel_module(ds: Dataset, rows: int, cols: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = UID(sop_class)
    fm.MediaStorageSOPInstanceUID = UID(sop_uid)
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = derive_uid("implementation")
    fm.ImplementationVersionName = "MARROWMAP_PH1"
    return fm


def _finish(ds: Dataset, path: Path, transfer_syntax: str | None) -> None:
    if transfer_syntax is not None and transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_classic_series(folder: Path, meta: StudyMeta, proto: Protocol, geo: SeriesGeometry,
                         pixels: NDArray[np.uint16], series_uid: str,
                         transfer_syntax: str | None = None, reverse: bool = False,
                         first_instance: int = 1) -> list[Path]:
    """One MR Image Storage file per slice; ``reverse`` numbers instances from the last slice."""
    paths = []
    n = geo.n_slices
    series_time = f"{int(meta.study_time[:2]):02d}{10 + proto.series_number * 3:02d}00"
    for k in range(n):
        inst = (n - k if reverse else k + 1) + first_instance - 1
        sop_uid = derive_uid(*meta.uid_parts, proto.key, "instance", inst)
        ds = Dataset()
        ds.file_meta = _file_meta(MRImageStorage, sop_uid)
        _patient_and_study(ds, meta)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = list(proto.image_type)
        ds.InstanceCreationDate = meta.study_date
        ds.InstanceCreationTime = series_time
        _series(ds, meta, proto, series_uid, series_time)
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = inst
        ds.ContentDate = meta.study_date
        ds.ContentTime = series_time
        ds.AcquisitionDate = meta.study_date
        ds.AcquisitionTime = series_time
        _mr_acquisition(ds, proto, geo, EQUIPMENT[meta.vendor].coil)
        pos = geo.slice_origin(k)
        ds.ImagePositionPatient = [_ds(v) for v in pos]
        ds.ImageOrientationPatient = [_ds(v) for v in (*geo.row_dir, *geo.col_dir)]
        ds.SliceLocation = _ds(float(pos @ geo.normal))
        ds.PixelSpacing = [_ds(geo.row_spacing), _ds(geo.col_spacing)]
        _pixel_module(ds, geo.rows, geo.cols)
        if proto.rescale is not None:
            ds.RescaleSlope = _ds(proto.rescale[0])
            ds.RescaleIntercept = _ds(proto.rescale[1])
            ds.RescaleType = "US"
        ds.WindowCenter = "600"
        ds.WindowWidth = "1400"
        ds.PixelData = np.ascontiguousarray(pixels[k]).tobytes()
        path = folder / f"IM{inst:04d}.dcm"
        _finish(ds, path, transfer_syntax)
        paths.append(path)
    return paths


def _frame_item(**kwargs: object) -> DicomSequence:
    item = Dataset()
    for key, value in kwargs.items():
        setattr(item, key, value)
    return DicomSequence([item])


def write_enhanced_series(folder: Path, meta: StudyMeta, proto: Protocol, geo: SeriesGeometry,
                          pixels: NDArray[np.uint16], series_uid: str,
                          transfer_syntax: str | None = None) -> list[Path]:
    """One Enhanced MR Image Storage object holding all slices, with per-frame functional groups."""
    sop_uid = derive_uid(*meta.uid_parts, proto.key, "enhanced")
    series_time = f"{int(meta.study_time[:2]):02d}{10 + proto.series_number * 3:02d}00"
    acq_dt = meta.study_date + series_time
    t = proto.timing
    ds = Dataset()
    ds.file_meta = _file_meta(EnhancedMRImageStorage, sop_uid)
    _patient_and_study(ds, meta)
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = meta.study_date
    ds.InstanceCreationTime = series_time
    _series(ds, meta, proto, series_uid, series_time)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = 1
    ds.ContentDate = meta.study_date
    ds.ContentTime = series_time
    ds.AcquisitionDateTime = acq_dt
    ds.AcquisitionDuration = 184.0
    ds.AcquisitionNumber = 1
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = "1.5"
    ds.ImageComments = ""
    ds.ApplicableSafetyStandardAgency = "IEC"
    contrast = {"stir": "STIR", "se": "T1", "fs": "T2"}[t.kind]
    ds.AcquisitionContrast = contrast
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    # MR pulse sequence module
    ds.PulseSequenceName = proto.sequence_name.lstrip("*")
    ds.MRAcquisitionType = proto.acquisition_type
    ds.EchoPulseSequence = "SPIN"
    ds.MultipleSpinEcho = "NO"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.SegmentedKSpaceTraversal = "PARTIAL"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.NumberOfKSpaceTrajectories = 1
    ds.TagThickness = None
    del ds.TagThickness
    _pixel_module(ds, geo.rows, geo.cols)
    ds.NumberOfFrames = geo.n_slices
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    # Enhanced MR Image: acquisition context, dimension module
    ds.AcquisitionContextSequence = DicomSequence([])
    dim_uid = derive_uid(*meta.uid_parts, proto.key, "dimension")
    ds.DimensionOrganizationSequence = _frame_item(DimensionOrganizationUID=dim_uid)
    idx_stack = Dataset()
    idx_stack.DimensionOrganizationUID = dim_uid
    idx_stack.DimensionIndexPointer = 0x00209056  # StackID
    idx_stack.FunctionalGroupPointer = 0x00209111  # FrameContentSequence
    idx_stack.DimensionDescriptionLabel = "Stack ID"
    idx_pos = Dataset()
    idx_pos.DimensionOrganizationUID = dim_uid
    idx_pos.DimensionIndexPointer = 0x00209057  # InStackPositionNumber
    idx_pos.FunctionalGroupPointer = 0x00209111
    idx_pos.DimensionDescriptionLabel = "In-Stack Position Number"
    ds.DimensionIndexSequence = DicomSequence([idx_stack, idx_pos])
    ds.DimensionOrganizationType = "3D"
    # shared functional groups
    shared = Dataset()
    shared.PixelMeasuresSequence = _frame_item(
        PixelSpacing=[_ds(geo.row_spacing), _ds(geo.col_spacing)], SliceThickness=_ds(geo.thickness),
        SpacingBetweenSlices=_ds(geo.spacing))
    shared.PlaneOrientationSequence = _frame_item(
        ImageOrientationPatient=[_ds(v) for v in (*geo.row_dir, *geo.col_dir)])
    shared.FrameAnatomySequence = _frame_item(
        FrameLaterality="B", AnatomicRegionSequence=_anatomy_code(meta.body_part))
    shared.PixelValueTransformationSequence = _frame_item(
        RescaleIntercept=_ds(proto.rescale[1] if proto.rescale else 0.0),
        RescaleSlope=_ds(proto.rescale[0] if proto.rescale else 1.0), RescaleType="US")
    shared.MRImageFrameTypeSequence = _frame_item(
        FrameType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], PixelPresentation="MONOCHROME",
        VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE",
        ComplexImageComponent="MAGNITUDE", AcquisitionContrast=contrast)
    shared.MRTimingAndRelatedParametersSequence = _frame_item(
        RepetitionTime=t.tr_ms, FlipAngle=proto.flip_angle, EchoTrainLength=proto.echo_train_length,
        RFEchoTrainLength=proto.echo_train_length, GradientEchoTrainLength=0,
        GradientOutputType="DB_DT", GradientOutput=0.0,
        SpecificAbsorptionRateSequence=_frame_item(SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                                                   SpecificAbsorptionRateValue=1.2),
        OperatingModeSequence=DicomSequence([_mode(kind) for kind in ("STATIC FIELD", "RF", "GRADIENT")]))
    shared.MRFOVGeometrySequence = _frame_item(
        InPlanePhaseEncodingDirection=proto.phase_encoding, MRAcquisitionFrequencyEncodingSteps=min(geo.cols, 320),
        MRAcquisitionPhaseEncodingStepsInPlane=int(min(geo.rows, 320) * 0.8),
        PercentSampling=100.0, PercentPhaseFieldOfView=proto.percent_phase_fov)
    shared.MREchoSequence = _frame_item(EffectiveEchoTime=t.te_ms)
    shared.MRModifierSequence = _frame_item(
        InversionRecovery="YES" if t.kind == "stir" else "NO",
        InversionTimes=[t.ti_ms] if t.kind == "stir" else None,
        FlowCompensation="NONE", T2Preparation="NO", SpectrallySelectedExcitation="NONE",
        SpatialPresaturation="NONE", PartialFourier="NO", ParallelAcquisition="NO")
    if t.kind != "stir":
        del shared.MRModifierSequence[0].InversionTimes
    shared.MRImagingModifierSequence = _frame_item(
        MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE",
        TransmitterFrequency=63.676, PixelBandwidth=proto.pixel_bandwidth)
    shared.MRReceiveCoilSequence = _frame_item(
        ReceiveCoilName="BODY", ReceiveCoilType="BODY", QuadratureReceiveCoil="NO",
        ReceiveCoilManufacturerName="")
    shared.MRTransmitCoilSequence = _frame_item(TransmitCoilName="BODY", TransmitCoilType="BODY",
                                                TransmitCoilManufacturerName="")
    shared.MRAveragesSequence = _frame_item(NumberOfAverages=1.0)
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames = []
    for k in range(geo.n_slices):
        f = Dataset()
        f.FrameContentSequence = _frame_item(
            FrameAcquisitionNumber=k + 1, FrameReferenceDateTime=acq_dt,
            FrameAcquisitionDateTime=acq_dt, FrameAcquisitionDuration=184000.0 / geo.n_slices,
            StackID="1", InStackPositionNumber=k + 1, DimensionIndexValues=[1, k + 1])
        f.PlanePositionSequence = _frame_item(
            ImagePositionPatient=[_ds(v) for v in geo.slice_origin(k)])
        frames.append(f)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path = folder / "IM0001.dcm"
    _finish(ds, path, transfer_syntax)
    return [path]


def _mode(kind: str) -> Dataset:
    item = Dataset()
    item.OperatingModeType = kind
    item.OperatingMode = "IEC_NORMAL"
    return item


def _anatomy_code(body_part: str) -> DicomSequence:
    item = Dataset()
    if body_part == "PELVIS":
        item.CodeValue, item.CodeMeaning = "816092008", "Pelvis"
    else:
        item.CodeValue, item.CodeMeaning = "24136001", "Hip joint"
    item.CodingSchemeDesignator = "SCT"
    return DicomSequence([item])
