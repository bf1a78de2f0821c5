"""Reading MR studies: loading volumes with LPS geometry, classifying and selecting series."""

from workers.io.classify import classify_series, plane_from_orientation
from workers.io.errors import SeriesLoadError
from workers.io.load import SeriesProblem, SkippedFile, StudyLoad, load_study
from workers.io.select import Selection, select_series

__all__ = [
    "Selection",
    "SeriesLoadError",
    "SeriesProblem",
    "SkippedFile",
    "StudyLoad",
    "classify_series",
    "load_study",
    "plane_from_orientation",
    "select_series",
]
