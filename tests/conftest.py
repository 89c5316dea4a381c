"""Suite-wide fixtures: no test writes into the user's real data or config directories.

The pipeline tests' fakes (a tiny ONNX bundle, a fake engine, clips) are
shared by other test folders: tests/pipeline is put on the path for them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "pipeline"))


@pytest.fixture(autouse=True)
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("PIVH_LIVE_DATA", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "share"))
    yield
