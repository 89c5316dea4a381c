"""Fixtures for the web tests: phantom clips and a recorded session, made once per test run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from web_fakes import PhantomClip, phantom_clip, record_session

from pivh_live.recording import SessionStore

# The recorded sweep: normal, haemorrhage (grade III), normal again, at 25 fps.
SWEEP = ((0, 40), (3, 60), (0, 40))


@pytest.fixture(scope="session")
def clips() -> dict[int, PhantomClip]:
    return {0: phantom_clip(0, 6, seed=11), 3: phantom_clip(3, 6, seed=12)}


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory, clips: dict[int, PhantomClip]) -> Path:
    """A session store with one recorded session (read-only: copy it before changing it)."""
    root = tmp_path_factory.mktemp("store")
    record_session(root, [(clips[g], n) for g, n in SWEEP])
    return root


@pytest.fixture
def store_copy(recorded: Path, tmp_path: Path) -> SessionStore:
    """A private copy of the recorded store, for tests that delete."""
    root = tmp_path / "store"
    shutil.copytree(recorded, root)
    return SessionStore(root)
