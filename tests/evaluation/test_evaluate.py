"""End to end: a tiny real ONNX bundle, the onnxruntime engine, a dataset written here.

The model reads only the mean brightness of the frame: grade g is drawn at
gray level 255 (g + 1) / 6 and a black frame is "no brain". So a case whose
frames show grade 0 while its labels say grade II is a known miss, and the
expected metrics can be worked out by hand.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from evaluation_fakes import write_clip
from pipeline_fakes import make_tiny_bundle

from pivh_live import DISCLAIMER
from pivh_live.bundle import load_bundle, sha256_file
from pivh_live.evaluation.evaluate import evaluate, frame_motion

onnx = pytest.importorskip("onnx")

SIZE, HEAT, FPS, N_FRAMES = 32, 4, 10.0, 20
# (case_id, clip_grade label, grade drawn in the frames)
CASES = [
    ("n0", 0, 0), ("n1", 0, 0), ("n2", 0, 0),
    ("a1", 1, 1), ("b1", 1, 1), ("a2", 2, 2),
    ("a3", 3, 3), ("b3", 3, 3), ("a4", 4, 4),
    ("miss2", 2, 0),
]  # fmt: skip


def _make_dataset(root: Path) -> Path:
    """Frames 0-1 black (no brain), 2-7 normal, 8-19 the drawn grade; lossless video."""
    root.mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "view", "clip_grade", "split", "exam_grade"])
        for case_id, label, drawn in CASES:
            exam = 4 if case_id == "a3" else label  # a sweep that missed the infarct
            w.writerow([case_id, "coronal", label, "test", exam])
            write_clip(root, case_id, label, drawn, FPS)
    (root / "phantom.json").write_text(json.dumps({"name": "tiny-set", "seed": 7}))
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    base = tmp_path_factory.mktemp("eval")
    bundle = make_tiny_bundle(base / "bundle")
    data = _make_dataset(base / "data")
    out = base / "out"
    result = evaluate(bundle, data, out, n_bootstrap=40, seed=1, batch_size=7, update_card=True)
    return result, out, bundle


def test_clip_metrics_match_hand_computed_values(run: tuple[dict, Path, Path]) -> None:
    result, _, _ = run
    clip = result["clip"]
    assert clip["n_clips"] == 10
    # 7 positives, 3 negatives; the miss ties with all 3 negatives: 1 - 0.5 * 3 / 21.
    assert clip["any_pivh"]["auc"]["value"] == pytest.approx(1 - 1.5 / 21)
    at = clip["any_pivh"]["at_threshold"]
    assert (at["tp"], at["fp"], at["tn"], at["fn"]) == (6, 0, 3, 1)
    assert clip["severe"]["auc"]["value"] == pytest.approx(1.0)
    sev = clip["severe"]["at_threshold"]
    assert (sev["tp"], sev["fp"], sev["tn"], sev["fn"]) == (3, 0, 7, 0)
    cm = np.array(clip["grade"]["confusion"])
    expected = np.diag([3, 2, 1, 2, 1])
    expected[2, 0] = 1  # the miss: label II, shown grade 0
    assert np.array_equal(cm, expected)
    assert clip["grade"]["accuracy"]["value"] == pytest.approx(0.9)
    assert clip["unassessable"]["n"] == 0 and clip["unassessable"]["case_ids"] == []
    # Re-weighting at NICU prevalence with se 6/7, sp 1: PPV 1, NPV by Bayes.
    p, se = 0.422, 6 / 7
    assert at["reweighted"]["npv"]["value"] == pytest.approx((1 - p) / ((1 - p) + (1 - se) * p))


def test_frame_metrics_and_validity(run: tuple[dict, Path, Path]) -> None:
    frame = run[0]["frame"]
    assert frame["n_frames"] == 10 * 18 and frame["n_cases"] == 10
    # Labels rebuilt from CASES, scores from the cache: pairwise AUC by definition.
    with np.load(run[1] / "predictions.npz") as z:
        p_pivh = (1.0 - z["grade_probs"][:, 0]).reshape(10, N_FRAMES)[:, 2:].ravel()
    grade = np.array([label if i >= 8 else 0 for _, label, _ in CASES for i in range(2, 20)])
    pos, neg = p_pivh[grade >= 1], p_pivh[grade == 0]
    pairwise = ((pos[:, None] > neg) + 0.5 * (pos[:, None] == neg)).mean()
    auc = frame["any_pivh"]["auc"]["value"]
    assert auc == pytest.approx(pairwise)
    # The miss's 12 frames look normal, the other 72 positives beat every negative.
    assert 1 - 12 / 84 <= auc < 1
    assert frame["any_pivh"]["auc"]["resampling"] == "cluster"
    validity = frame["validity"]
    assert validity["n_frames"] == 200 and validity["n_invalid"] == 20
    assert validity["auc"]["value"] == pytest.approx(1.0)
    assert validity["at_threshold"]["accuracy"]["value"] == pytest.approx(1.0)


def test_targets_and_dataset_summary(run: tuple[dict, Path, Path]) -> None:
    result = run[0]
    targets = {t["name"]: t for t in result["targets"]}
    assert targets["any-PIVH clip AUC"]["met"] is False  # 0.929 < 0.98
    assert targets["any-PIVH clip AUC"]["value"] == pytest.approx(1 - 1.5 / 21)
    data = result["dataset"]
    assert data["name"] == "tiny-set" and data["seed"] == 7
    assert data["clip_grade_counts"] == [3, 2, 2, 2, 1]
    assert data["n_frames"] == 200 and data["splits"] == {"test": 10}
    assert result["model"]["sha256"] == sha256_file(run[2] / "model.onnx")
    assert data["overlap_with_training"] is None


def test_outputs_written(run: tuple[dict, Path, Path]) -> None:
    result, out, _ = run
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(result))
    page = (out / "report.html").read_text()
    assert DISCLAIMER in page[: page.index("<h1>")]
    with open(out / "frames.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200
    assert rows[0]["visible_grade"] == "-1" and rows[0]["valid"] == "0"
    assert float(rows[10]["p_grade0"]) > 0.9
    with open(out / "clips.csv") as f:
        clips = {r["case_id"]: r for r in csv.DictReader(f)}
    assert clips["miss2"]["predicted_grade"] == "0" and clips["a4"]["predicted_grade"] == "4"
    assert clips["a3"]["exam_grade"] == "4" and clips["a3"]["clip_grade"] == "3"
    assert result["dataset"]["clips_below_exam_grade"] == 1
    pytest.importorskip("matplotlib")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 5
    # the five plots and miss2, the one clip graded wrong, in the disagreements gallery
    assert page.count("data:image/png;base64,") == 6
    assert [d["case_id"] for d in result["clip"]["disagreements"]] == ["miss2"]
    assert (out / result["clip"]["disagreements"][0]["image"]).is_file()


def test_card_updated_and_still_verifies(run: tuple[dict, Path, Path]) -> None:
    result, _, bundle_dir = run
    bundle = load_bundle(bundle_dir)  # hashes still match after the card edit
    ev = bundle.card["metrics"]["evaluation"]
    assert ev["clip_any_pivh_auc"] == {
        k: result["clip"]["any_pivh"]["auc"][k] for k in ("value", "lo", "hi")
    }
    assert ev["dataset"] == "tiny-set" and ev["dataset_seed"] == 7 and ev["n_cases"] == 10


def test_rerun_reuses_cache_and_is_deterministic(
    run: tuple[dict, Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    result, out, bundle = run
    import pivh_live.engines

    def no_engine(*args: object, **kwargs: object) -> None:
        raise AssertionError("engine created although predictions.npz matches")

    monkeypatch.setattr(pivh_live.engines, "create_engine", no_engine)
    with caplog.at_level(logging.INFO):
        again = evaluate(bundle, Path(result["dataset"]["path"]), out, n_bootstrap=40, seed=1)
    assert "reusing per-frame outputs" in caplog.text
    assert again["clip"] == result["clip"] and again["frame"] == result["frame"]


def test_cli_writes_report(run: tuple[dict, Path, Path], tmp_path: Path) -> None:
    from pivh_live.cli import main

    result, _, bundle = run
    out = tmp_path / "cli"
    data = result["dataset"]["path"]
    rc = main(["-q", "evaluate", "--model", str(bundle), "--data", data, "--out", str(out),
               "--bootstrap", "20", "--seed", "3"])  # fmt: skip
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["n_bootstrap"] == 20 and metrics["settings"]["seed"] == 3
    assert metrics["clip"]["any_pivh"]["auc"]["value"] == result["clip"]["any_pivh"]["auc"]["value"]


def test_frame_motion() -> None:
    frames = np.zeros((3, 4, 4), np.uint8)
    frames[2] = 2
    motion = frame_motion(frames)
    assert np.isnan(motion[0]) and motion[1] == 0.0 and motion[2] == 2.0


def test_cases_without_frame_labels_and_a_bad_cache(
    run: tuple[dict, Path, Path], tmp_path: Path
) -> None:
    import shutil

    result, _, bundle = run
    data = tmp_path / "data"
    shutil.copytree(result["dataset"]["path"], data)
    for case_id in ("n0", "a4", "miss2"):
        (data / f"{case_id}.frames.csv").unlink()
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.npz").write_bytes(b"not a zip")
    res = evaluate(bundle, data, out, n_bootstrap=20, seed=0)
    assert res["frame"]["n_frames"] == 7 * 18 and res["frame"]["n_cases"] == 7
    assert res["dataset"]["frame_grade_counts"]["unlabelled"] == 3 * N_FRAMES
    assert res["frame"]["any_pivh"]["auc"]["value"] == pytest.approx(1.0)  # the miss is gone
    # Clip level still has every case and so the same scores.
    assert res["clip"]["n_clips"] == 10
    assert res["clip"]["any_pivh"]["auc"]["value"] == result["clip"]["any_pivh"]["auc"]["value"]


def test_training_overlap_is_detected(tmp_path: Path) -> None:
    from pivh_live.evaluation.evaluate import training_overlap

    data = tmp_path / "d"
    data.mkdir()
    meta = {"generator": "pivh_live.phantom", "seed": 3, "args": {"n_cases": 10}}
    card = {"training_data": {"train": str(data), "dataset": meta}}
    assert "trained on" in training_overlap(card, data, {})
    card["training_data"]["train"] = str(tmp_path / "other")
    other_size = {**meta, "args": {"n_cases": 50}}
    assert "seed 3" in training_overlap(card, data, {"phantom": other_size})
    assert training_overlap(card, data, {"phantom": {**meta, "seed": 4}}) is None
    assert training_overlap({}, data, {"phantom": meta}) is None


def test_shifted_input_is_scored_again_and_labelled(
    run: tuple[dict, Path, Path], tmp_path: Path
) -> None:
    from pivh_live.errors import ConfigError
    from pivh_live.evaluation.shifts import Shift

    result, out, bundle = run
    data = Path(result["dataset"]["path"])
    shutil.copytree(out, tmp_path / "out")  # its cache holds the unshifted outputs
    dim = evaluate(
        bundle, data, tmp_path / "out", n_bootstrap=40, seed=1, shifts=[Shift("gain", 0.5)]
    )
    assert dim["settings"]["shifts"] == ["gain=0.5"]
    assert result["settings"]["shifts"] == []
    # the tiny model grades by brightness: half the gray reads as a lower grade
    assert dim["clip"]["grade"]["qwk"]["value"] < result["clip"]["grade"]["qwk"]["value"]
    assert "gain=0.5" in (tmp_path / "out" / "report.html").read_text()
    with pytest.raises(ConfigError, match="--update-card"):
        evaluate(bundle, data, tmp_path / "x", shifts=[Shift("gain", 0.5)], update_card=True)


def test_cli_shift_errors_are_one_line(
    run: tuple[dict, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pivh_live.cli import main

    result, _, bundle = run
    args = ["evaluate", "--model", str(bundle), "--data", result["dataset"]["path"]]
    rc = main([*args, "--out", str(tmp_path / "o"), "--shift", "tint=2"])
    err = capsys.readouterr().err
    assert rc != 0 and "unknown shift 'tint'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def _copy_without(src: Path, dst: Path, drop: str, seed: int) -> Path:
    """A copy of the tiny dataset without case ``drop``, under another phantom seed."""
    shutil.copytree(src, dst)
    with open(src / "labels.csv", newline="") as f:
        rows = [r for r in csv.reader(f) if r[0] != drop]
    with open(dst / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    for p in dst.glob(f"{drop}.*"):
        p.unlink()
    (dst / "phantom.json").write_text(json.dumps({"name": "tiny-set", "seed": seed}))
    return dst


def test_several_datasets_are_reported_each_and_pooled(
    run: tuple[dict, Path, Path], tmp_path: Path
) -> None:
    from pivh_live.errors import ConfigError

    result, _, bundle = run
    a = Path(result["dataset"]["path"])
    b = _copy_without(a, tmp_path / "b" / "data", "miss2", seed=8)  # same dir name as a
    out = tmp_path / "pooled"
    pooled = evaluate(bundle, [a, b], out, n_bootstrap=40, seed=1)
    # one report per set, in a directory named after it (numbered on a clash)
    each = json.loads((out / "data" / "metrics.json").read_text())
    assert each["clip"] == result["clip"]
    other = json.loads((out / "data-2" / "metrics.json").read_text())
    assert other["clip"]["n_clips"] == 9 and other["dataset"]["seed"] == 8
    assert other["clip"]["any_pivh"]["auc"]["value"] == pytest.approx(1.0)
    # the pooled metrics are those of all 19 clips: 13 positives, 6 negatives, and
    # the one miss ties with every negative
    clip = pooled["clip"]
    assert clip["n_clips"] == 19
    assert clip["any_pivh"]["auc"]["value"] == pytest.approx(1 - 0.5 * 6 / (13 * 6))
    cm = np.array(clip["grade"]["confusion"])
    assert np.array_equal(
        cm, np.array(result["clip"]["grade"]["confusion"]) + other["clip"]["grade"]["confusion"]
    )
    assert pooled["frame"]["n_frames"] == 19 * 18 and pooled["frame"]["n_cases"] == 19
    data = pooled["dataset"]
    assert data["n_cases"] == 19 and data["clip_grade_counts"] == [6, 4, 3, 4, 2]
    assert [p["report"] for p in data["parts"]] == ["data/report.html", "data-2/report.html"]
    assert [p["seed"] for p in data["parts"]] == [7, 8]
    assert data["parts"][0]["clip_grade_qwk"] == result["clip"]["grade"]["qwk"]["value"]
    with open(out / "clips.csv") as f:
        ids = [r["case_id"] for r in csv.DictReader(f)]
    assert len(ids) == 19 and ids[0] == "data/n0" and ids[-1] == "data-2/a4"
    page = (out / "report.html").read_text()
    assert "Datasets pooled (2" in page and 'href="data-2/report.html"' in page
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(pooled))
    with pytest.raises(ConfigError, match="alone"):
        evaluate(bundle, [a, b], tmp_path / "x", update_card=True)
    with pytest.raises(ConfigError, match="twice"):  # its clips would count twice
        evaluate(bundle, [a, b, a.parent / a.name], tmp_path / "y")


def test_cli_takes_several_datasets(
    run: tuple[dict, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pivh_live.cli import main

    result, _, bundle = run
    a = Path(result["dataset"]["path"])
    b = _copy_without(a, tmp_path / "other", "a4", seed=9)
    out = tmp_path / "o"
    rc = main(["-q", "evaluate", "--model", str(bundle), "--data", str(a), str(b),
               "--out", str(out), "--bootstrap", "20"])  # fmt: skip
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clip"]["n_clips"] == 19
    assert (out / "data" / "report.html").is_file() and (out / "other" / "report.html").is_file()
    rc = main(["-q", "evaluate", "--model", str(bundle), "--data", str(a), str(b),
               "--out", str(tmp_path / "p"), "--update-card"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc != 0 and "alone" in err and "Traceback" not in err


def test_a_recalibrated_copy_of_the_weights_is_scored_anew(
    run: tuple[dict, Path, Path], tmp_path: Path
) -> None:
    """Same model.onnx, but a prior correction in the card: the cache must not be reused."""
    from pivh_live.bundle import CARD_FILE, set_grade_logit_offsets, write_json_atomic

    result, out, bundle = run
    copy = tmp_path / "recal"
    shutil.copytree(bundle, copy)
    card = json.loads((copy / CARD_FILE).read_text())
    set_grade_logit_offsets(card, [0.0, -3.0, -3.0, -3.0, -3.0])
    write_json_atomic(copy / CARD_FILE, card)
    reused = tmp_path / "out"
    shutil.copytree(out, reused)  # its cache holds the uncorrected outputs
    again = evaluate(copy, Path(result["dataset"]["path"]), reused, n_bootstrap=10, seed=1)
    assert again["frame"] != result["frame"]
    z = np.load(reused / "predictions.npz")
    assert "grade_logit_offsets" in str(z["key"])
