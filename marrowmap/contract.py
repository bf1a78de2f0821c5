"""The job message: the only thing the listener and the workers exchange over the broker.

Files travel on the shared spool volume; the message carries ids, UIDs and a spool path
relative to ``Settings.spool_dir``. Both sides validate it (``extra="forbid"``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION: Literal[1] = 1

#: Celery task names: the listener sends by name and never imports worker code.
TASK_ANALYZE = "marrowmap.analyze_study"
TASK_SEND = "marrowmap.send_results"
#: Queues: CPU-bound analysis and network-bound sending scale separately.
QUEUE_ANALYSIS = "analysis"
QUEUE_SEND = "send"

_UID_PATTERN = r"^[0-9.]{1,64}$"


class SeriesEntry(BaseModel):
    """One series of the sealed study as the listener saw it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    series_instance_uid: str = Field(pattern=_UID_PATTERN)
    modality: str = Field(max_length=16)
    instance_count: int = Field(gt=0)
    series_description: str = Field("", max_length=256)
    sop_class_uids: tuple[str, ...] = ()


class JobMessage(BaseModel):
    """An analysis job for one sealed batch of one study."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    job_id: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    study_instance_uid: str = Field(pattern=_UID_PATTERN)
    spool_path: str = Field(min_length=1, description="Study folder, relative to the spool root.")
    series: tuple[SeriesEntry, ...] = Field(min_length=1)
    calling_ae: str = Field(max_length=16)
    first_received: AwareDatetime
    last_received: AwareDatetime
    sealed_at: AwareDatetime

    @field_validator("spool_path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("spool_path must be relative to the spool root, without '..'")
        return value

    @property
    def instance_count(self) -> int:
        """Total instances over all series."""
        return sum(s.instance_count for s in self.series)


def utc_timestamp(moment: datetime) -> str:
    """ISO-8601 text of an aware datetime (used in logs and the job store)."""
    return moment.isoformat(timespec="milliseconds")
