"""A prior study handed to the pipeline: its reference and its analysis result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from workers.analysis.result import AnalysisResult
from workers.followup.compare import ComparisonError, prior_ref_of
from workers.followup.model import PriorStudyRef

#: The key slice (fused, RGB) written next to result.json, shown beside the next follow-up's.
KEY_IMAGE_FILE = "key_image.png"


@dataclass(frozen=True)
class PriorStudy:
    """The patient's prior analysed study: where it is (reference), what was measured, its output folder."""

    ref: PriorStudyRef
    result: AnalysisResult
    folder: Path | None = None

    def key_image(self) -> NDArray[np.uint8] | None:
        """The prior's key slice (RGB) when its folder still has one, else None."""
        if self.folder is None:
            return None
        try:
            with Image.open(self.folder / KEY_IMAGE_FILE) as img:
                return np.asarray(img.convert("RGB"), dtype=np.uint8)
        except (OSError, UnidentifiedImageError):
            return None


def load_prior(result_json: Path, *, job_id: str = "") -> PriorStudy:
    """Read a prior ``result.json``; ComparisonError when unreadable or not an analysed study."""
    try:
        result = AnalysisResult.model_validate_json(Path(result_json).read_bytes())
    except OSError as exc:
        raise ComparisonError(f"prior result {result_json} cannot be read: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        raise ComparisonError(f"prior result {result_json} is not a MarrowMap result.json "
                              f"({exc.error_count()} error(s))") from exc
    if result.status != "analyzed":
        raise ComparisonError(f"prior result {result_json} was not analysed ({result.status}: {result.reason})")
    return PriorStudy(ref=prior_ref_of(result, job_id), result=result, folder=Path(result_json).parent)
