"""Per-scanner ROI profiles: location, permissions, merge, validation."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pivh_live.errors import ConfigError
from pivh_live.frames import Roi
from pivh_live.profiles import (
    load_profile,
    profile_path,
    profile_roi,
    profiles_dir,
    save_profile,
)


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    return tmp_path / "cfg"


def test_location_respects_xdg_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "x"))
    assert profiles_dir() == tmp_path / "x" / "pivh-live" / "profiles"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert profiles_dir() == tmp_path / "home" / ".config" / "pivh-live" / "profiles"


def test_save_merge_load_with_private_modes(config_home: Path) -> None:
    big, small = Roi(420, 130, 1080, 860), Roi(280, 86, 720, 574)
    path = save_profile("voluson-e10", "1920x1080", big)
    save_profile("voluson-e10", (1280, 720), small)
    assert path == config_home / "pivh-live" / "profiles" / "voluson-e10.json"
    assert load_profile("voluson-e10") == {"1920x1080": big, "1280x720": small}
    assert profile_roi("voluson-e10", 1280, 720) == small
    assert profile_roi("voluson-e10", 1024, 768) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data == {
        "version": 1,
        "rois": {
            "1280x720": {"x": 280, "y": 86, "w": 720, "h": 574},
            "1920x1080": {"x": 420, "y": 130, "w": 1080, "h": 860},
        },
    }
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_replacing_a_resolution_keeps_the_others(config_home: Path) -> None:
    save_profile("s1", "1920x1080", Roi(0, 0, 10, 10))
    save_profile("s1", "1280x720", Roi(1, 1, 10, 10))
    save_profile("s1", "1920x1080", Roi(5, 5, 20, 20))
    assert load_profile("s1") == {"1920x1080": Roi(5, 5, 20, 20), "1280x720": Roi(1, 1, 10, 10)}


@pytest.mark.parametrize("name", ["../etc/passwd", "", "a/b", ".hidden", "x" * 80])
def test_bad_names(config_home: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="bad profile name"):
        profile_path(name)


def test_missing_profile(config_home: Path) -> None:
    with pytest.raises(ConfigError, match="no profile 'nope'"):
        load_profile("nope")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "cannot read profile"),
        ('{"version": 2, "rois": {}}', '"version": 1'),
        ('{"version": 1, "roi": {}}', "unknown key 'roi'"),
        ('{"version": 1, "rois": {"1920*1080": {"x": 0, "y": 0, "w": 1, "h": 1}}}', "1920*1080"),
        ('{"version": 1, "rois": {"640x480": {"x": 0, "y": 0, "w": 1}}}', "exactly x, y, w, h"),
        ('{"version": 1, "rois": {"640x480": {"x": 0, "y": 0, "w": 1.5, "h": 1}}}', "integers"),
        ('{"version": 1, "rois": {"640x480": {"x": 600, "y": 0, "w": 100, "h": 1}}}', "fit"),
    ],
)
def test_malformed_files_name_the_problem(config_home: Path, content: str, needle: str) -> None:
    path = profile_path("bad")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ConfigError, match="bad") as exc:
        load_profile("bad")
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_save_rejects_a_roi_outside_its_resolution(config_home: Path) -> None:
    with pytest.raises(ConfigError, match="does not fit a 1280x720 frame"):
        save_profile("s2", "1280x720", Roi(1000, 0, 400, 100))
    assert not profile_path("s2").exists()
