"""`marrowmap series FOLDER`: what the loader, the classifier and the selection make of a folder."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from marrowmap.cli import main
from tests.io_fixtures import (
    AXIAL,
    CORONAL,
    STIR_COR,
    T1_COR,
    T2_AX,
    SeriesSpec,
    centred_geometry,
    marker_volume,
    write_classic,
)


def _write(folder: Path, key: str, headers: dict[str, object], orientation: object) -> None:
    shape = (5, 32, 32)
    geometry = centred_geometry(orientation, shape)  # type: ignore[arg-type]
    write_classic(folder, SeriesSpec(marker_volume(shape, (1, 1, 1)), geometry, dict(headers), series_key=key))


def test_series_command_lists_kinds_and_selection(tmp_path: Path) -> None:
    _write(tmp_path, "t1", T1_COR, CORONAL)
    _write(tmp_path, "stir", STIR_COR, CORONAL)
    (tmp_path / "readme.txt").write_text("x")

    result = CliRunner().invoke(main, ["--log-format", "console", "series", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "'COR STIR' (stir coronal, 5 slices)" in result.output
    assert "TI=150ms (STIR range at 1.5T, typical)" in result.output
    assert "selection: fluid-sensitive: #1 'COR STIR'" in result.output
    assert "skipped: " in result.output and "readme.txt" in result.output


def test_series_command_says_not_applicable(tmp_path: Path) -> None:
    _write(tmp_path, "t2", T2_AX, AXIAL)

    result = CliRunner().invoke(main, ["--log-format", "console", "series", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "not applicable: no fat-suppressed fluid-sensitive series" in result.output
