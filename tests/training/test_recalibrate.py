"""pivh-live recalibrate: prior-correction offsets and re-picked thresholds on a tiny dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pipeline_fakes import make_tiny_bundle

from pivh_live import cli
from pivh_live.bundle import CARD_FILE, ONNX_FILE, SCHEMA_OFFSETS, load_bundle, sha256_file
from pivh_live.engines import create_engine
from pivh_live.errors import ConfigError, ModelBundleError
from pivh_live.media import write_video
from pivh_live.training.config import ModelConfig, TrainConfig
from pivh_live.training.prior import logit_offsets
from pivh_live.training.recalibrate import recalibrate

pytest.importorskip("onnx", reason="onnx is in the train extra (builds the tiny bundle)")

SIZE = 64  # the smallest input a training config allows
N_FRAMES = 8
# case_id, clip grade, split: every grade trains; validation has normal and bleeding clips
CASES = [(f"t{g}{k}", g, "train") for g in range(5) for k in range(2)]
CASES += [("v0", 0, "val"), ("v1", 0, "val"), ("v3", 3, "val"), ("v4", 4, "val")]


def _write_case(root: Path, case_id: str, grade: int, seed: int) -> np.ndarray:
    """Speckle; the lesion (bright block) in frames 2-5; returns visible grade per frame."""
    rng = np.random.default_rng(seed)
    frames = np.clip(rng.rayleigh(30.0, (N_FRAMES, SIZE, SIZE)), 0, 255).astype(np.uint8)
    visible = np.zeros(N_FRAMES, dtype=int)
    if grade > 0:
        frames[2:6, 8:24, 8:24] = 60 + 40 * grade
        visible[2:6] = grade
    write_video(root / f"{case_id}.mp4", frames, 25.0)
    rows = ["frame,visible_grade,valid"] + [f"{t},{v},1" for t, v in enumerate(visible)]
    (root / f"{case_id}.frames.csv").write_text("\n".join(rows) + "\n")
    return visible


def _dataset(root: Path, cases: list[tuple[str, int, str]]) -> tuple[Path, np.ndarray]:
    root.mkdir(parents=True)
    lines = ["case_id,view,clip_grade,split"]
    counts = np.zeros(5, dtype=int)
    for i, (case_id, grade, split) in enumerate(cases):
        visible = _write_case(root, case_id, grade, 200 + i)
        if split == "train":
            counts += np.bincount(visible, minlength=5)
        lines.append(f"{case_id},coronal,{grade},{split}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root, counts


def _config() -> TrainConfig:
    return TrainConfig(
        frame_stride=1, val_frame_stride=1, decode_workers=1, model=ModelConfig(input_size=SIZE)
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("recal")
    data, train_counts = _dataset(root / "data", CASES)
    # the target: mostly normal clips, one of each lesion grade (every frame counts)
    target_cases = [(f"n{k}", 0, "") for k in range(6)] + [(f"l{g}", g, "") for g in range(1, 5)]
    target, _ = _dataset(root / "target", target_cases)
    target_counts = np.array([6 * N_FRAMES + 4 * 4] + [4] * 4)
    bundle = make_tiny_bundle(root / "tiny", gain=4.0, size=SIZE)  # soft probabilities
    out = root / "recal"
    card = recalibrate(bundle, [data], [target], out, _config(), version="0.0.2", progress=False)
    return {
        "root": root,
        "data": data,
        "target": target,
        "bundle": bundle,
        "out": out,
        "card": card,
        "train_counts": train_counts,
        "target_counts": target_counts,
    }


def test_recalibrated_bundle_carries_the_offsets_and_the_same_weights(setup: dict) -> None:
    new = load_bundle(setup["out"])
    expected = logit_offsets(setup["train_counts"], setup["target_counts"], 0.5)
    assert new.grade_logit_offsets == pytest.approx(expected, abs=1e-6)
    assert new.card["schema"] == SCHEMA_OFFSETS and new.version == "0.0.2"
    assert new.onnx_sha256 == sha256_file(setup["bundle"] / ONNX_FILE)
    pc = new.card["prior_correction"]
    assert pc["training_frames"] == setup["train_counts"].tolist()
    assert pc["target_frames"] == setup["target_counts"].tolist()
    assert new.card["recalibrated_from"]["version"] == load_bundle(setup["bundle"]).version
    assert set(new.card["metrics"]) == {"validation", "validation_without_prior_correction"}
    assert 0.0 < new.thresholds["pivh"] < 1.0 and 0.0 < new.thresholds["severe"] < 1.0


def test_engines_of_the_new_bundle_add_the_offsets_before_the_softmax(setup: dict) -> None:
    old, new = load_bundle(setup["bundle"]), load_bundle(setup["out"])
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8) for _ in range(3)]
    with create_engine("onnxruntime", old) as e_old, create_engine("onnxruntime", new) as e_new:
        before = np.array([s.grade_probs for s in e_old.score_batch(images)], dtype=np.float64)
        after = np.array([s.grade_probs for s in e_new.score_batch(images)], dtype=np.float64)
    expected = before * np.exp(np.array(new.grade_logit_offsets))
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(after, expected, atol=1e-5)
    assert not np.allclose(after, before, atol=1e-3)


def test_recalibrate_refuses_what_it_cannot_do_right(setup: dict, tmp_path: Path) -> None:
    args = ([setup["data"]], [setup["target"]])
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a model bundle"):
        recalibrate(setup["bundle"], *args, other, _config(), progress=False)
    assert (other / "a.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="is the bundle being recalibrated"):
        recalibrate(setup["bundle"], *args, setup["bundle"], _config(), progress=False)
    with pytest.raises(ModelBundleError, match="already recalibrated"):
        recalibrate(setup["out"], *args, tmp_path / "again", _config(), progress=False)
    wrong = _config().replace(model=ModelConfig(input_size=2 * SIZE))
    with pytest.raises(ConfigError, match="input_size"):
        recalibrate(setup["bundle"], *args, tmp_path / "wrong", wrong, progress=False)


def test_an_existing_bundle_at_out_is_replaced(setup: dict, tmp_path: Path) -> None:
    out = tmp_path / "shipped"
    shutil.copytree(setup["bundle"], out)
    (out / "evaluation").mkdir()  # an old bundle's report goes with it
    recalibrate(setup["bundle"], [setup["data"]], [setup["target"]], out, _config(), progress=False)
    assert load_bundle(out).grade_logit_offsets is not None
    assert not (out / "evaluation").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["shipped"]  # no temporary directory left


def test_cli_reports_a_target_without_frame_labels_in_one_line(
    setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "weak"
    _dataset(target, [("w0", 0, ""), ("w1", 2, "")])
    (target / "w1.frames.csv").unlink()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_config().to_dict()))
    rc = cli.main(
        [
            "recalibrate",
            "--model", str(setup["bundle"]),
            "--data", str(setup["data"]),
            "--config", str(config),
            "--target", str(target),
            "--out", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "has no frames.csv" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / CARD_FILE).exists()
