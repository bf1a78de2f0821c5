"""The manifest of a sealed study batch (``manifest.json`` in the ready folder).

Written by the listener when it seals a batch; read by the worker to check that the
folder holds exactly what the listener sealed. Plain JSON on the shared spool.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1


class ManifestSeries(BaseModel):
    """One series of the batch folder (all instances received so far for it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    series_instance_uid: str
    modality: str = ""
    instance_count: int = Field(gt=0)
    series_number: int | None = None
    series_description: str = ""
    protocol_name: str = ""
    body_part_examined: str = ""
    sop_class_uids: tuple[str, ...] = ()
    transfer_syntax_uids: tuple[str, ...] = ()
    files: tuple[str, ...] = Field((), description="File names (<sop_uid>.dcm) in the series folder.")
    new_instance_count: int | None = Field(
        None, ge=0, description="Instances of the series received in this batch; None: not recorded (all new).")
    own_output: bool = Field(False, description="Carries MarrowMap's own Manufacturer/Model (one of its results).")
    derived_secondary: bool = Field(False, description="ImageType DERIVED\\SECONDARY: made from other images.")


class RouteDecision(BaseModel):
    """Whether the study becomes an analysis job, and why (logged and kept)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analyse: bool
    reason: str
    own_results: bool = Field(False, description="Only MarrowMap's own results arrived: logged, no job, no record.")


class Manifest(BaseModel):
    """What one sealed batch folder holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = MANIFEST_SCHEMA_VERSION
    job_id: str
    study_instance_uid: str
    batch: int = Field(ge=1)
    study_description: str = ""
    calling_aets: tuple[str, ...] = ()
    first_received: AwareDatetime
    last_received: AwareDatetime
    sealed_at: AwareDatetime
    series: tuple[ManifestSeries, ...]
    new_instances: int = Field(ge=0, description="Instances received in this batch.")
    resent_instances: int = Field(ge=0, description="New instances whose SOP Instance UID an earlier batch already had.")
    carried_instances: int = Field(ge=0, description="Instances carried over from the previous batch.")
    unreadable_files: tuple[str, ...] = ()
    refused_instances: tuple[str, ...] = Field(
        (), description="SOP Instance UIDs of the study refused for lack of resources (disk, instances per study) "
                        "and not received since: "
                        "the batch is partial and is not analysed as complete.",
    )
    route: RouteDecision

    @property
    def incomplete_reason(self) -> str:
        """Why the batch is partial ('' when it is complete)."""
        if not self.refused_instances:
            return ""
        return (f"study incomplete: {len(self.refused_instances)} instance(s) were refused by MarrowMap "
                f"(out of resources or over max_instances_per_study) and not received again; "
                f"send the study again to analyse it")

    @property
    def instance_count(self) -> int:
        """Instances in the folder."""
        return sum(s.instance_count for s in self.series)
