"""The CLI: help for every command, one-line errors, no traceback for user errors."""

from __future__ import annotations

import pytest

from pivh_live import cli
from pivh_live.errors import DatasetError


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out
    assert "NOT FOR DIAGNOSIS" in out


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: pivh-live " + name in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_user_error_is_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pivh_live.commands.check_data as check_data

    def boom(args: object) -> int:
        raise DatasetError("labels.csv is missing in /nowhere; see docs/dataset.md")

    monkeypatch.setattr(check_data, "main", boom)
    assert cli.main(["check-data", "/nowhere"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "pivh-live check-data: error: labels.csv is missing in /nowhere; see docs/dataset.md"
    )
    assert "Traceback" not in err
