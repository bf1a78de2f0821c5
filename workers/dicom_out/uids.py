"""Deterministic output UIDs.

Every UID MarrowMap writes is derived from the job's input, never drawn at random:
the study UID, the sorted SOP Instance UIDs of the input images, the algorithm
version and the kind of output (plus an index for series of images). Analysing the
same input again therefore yields the same UIDs and a PACS sees a re-send, not a
duplicate; any different input gives different UIDs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.uid import generate_uid

_SEPARATOR = "\x1f"  # unit separator: keeps ("1.2", "3") and ("1.", "23") apart


@dataclass(frozen=True)
class UidDeriver:
    """Derives every UID of one job's outputs from the same input identity."""

    prefix: str
    study_instance_uid: str
    input_sop_instance_uids: tuple[str, ...]
    algorithm_version: str

    @classmethod
    def for_inputs(
        cls, prefix: str, study_instance_uid: str, input_uids: Iterable[str], algorithm_version: str
    ) -> UidDeriver:
        """Build a deriver; the input UIDs are de-duplicated and sorted (order does not matter)."""
        uids = tuple(sorted({str(uid) for uid in input_uids}))
        if not uids:
            raise ValueError("input_uids must name at least one input instance")
        return cls(prefix, str(study_instance_uid), uids, algorithm_version)

    def uid(self, kind: str, index: int | None = None) -> str:
        """The UID of output ``kind`` (e.g. ``"seg.series"``), optionally the ``index``-th one."""
        parts = [self.study_instance_uid, *self.input_sop_instance_uids, self.algorithm_version, kind]
        if index is not None:
            parts.append(str(index))
        return str(generate_uid(prefix=self.prefix, entropy_srcs=[_SEPARATOR.join(parts)]))
