"""The costliest grade disagreements: which clips, which frame, private images, the report.

The tiny real ONNX bundle reads only the mean brightness of a frame
(evaluation_fakes), so which clips the model gets wrong, and by how much, is
set by how each test clip is drawn.
"""

from __future__ import annotations

import csv
import json
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from evaluation_fakes import level, write_clip
from pipeline_fakes import make_tiny_bundle

from pivh_live.errors import ConfigError
from pivh_live.evaluation.evaluate import evaluate

pytest.importorskip("onnx")

FPS = 10.0
# (case_id, clip_grade label, grade drawn in frames 8-19)
CASES = [
    ("over2", 1, 2), ("n0", 0, 0), ("miss2", 2, 0),
    ("over4", 0, 4), ("a3", 3, 3), ("b4", 4, 4),
]  # fmt: skip
LESION_FRAME = 15  # miss2's mask is largest here


def _make_dataset(
    root: Path, cases: list[tuple[str, int, int]] = CASES, frame_labels: bool = True
) -> Path:
    """The clips of evaluation_fakes; miss2 also has lesion masks."""
    root.mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "view", "clip_grade"])
        for case_id, label, drawn in cases:
            w.writerow([case_id, "coronal", label])
            write_clip(root, case_id, label, drawn, FPS, frame_labels)
            if not frame_labels:
                continue
            if case_id == "miss2":
                masks = np.zeros((20, 40, 40), dtype=bool)
                for k in range(8, 20):
                    r = 12 - abs(k - LESION_FRAME)  # grows to frame 15, then shrinks
                    masks[k, 20 - r // 2 : 20 + r // 2, 20 - r // 2 : 20 + r // 2] = True
                np.savez_compressed(root / f"{case_id}.masks.npz", masks=masks)
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("disagree")
    return make_tiny_bundle(base / "bundle"), _make_dataset(base / "data"), base


def test_costliest_first_with_the_frame_behind_each(setup: tuple[Path, Path, Path]) -> None:
    bundle, data, base = setup
    out = base / "out"
    result = evaluate(bundle, data, out, n_bootstrap=20, gallery=2)
    items = result["clip"]["disagreements"]
    # over4 costs (0-4)^2 = 16, miss2 (2-0)^2 = 4, over2 1: the limit keeps the first two.
    assert [(d["case_id"], d["label"], d["shown"]) for d in items] == [
        ("over4", 0, 4),
        ("miss2", 2, 0),
    ]
    over, miss = items
    assert over["weight"] == 1.0 and miss["weight"] == 0.25
    # The over-call shows a frame that drove grade IV (drawn IV from frame 8 on).
    assert over["why"] == "drove the grade"
    assert 8 <= over["frame"] <= 19 and over["p_frame"] > 0.5
    assert over["frame_label"] == 0
    # The missed grade II shows the frame where its labelled lesion is largest.
    assert miss["why"] == "largest lesion"
    assert miss["frame"] == LESION_FRAME and miss["frame_label"] == 2
    assert miss["t_s"] == pytest.approx(LESION_FRAME / FPS)
    assert json.loads((out / "metrics.json").read_text())["clip"]["disagreements"] == items


def test_images_are_private_and_in_the_report(setup: tuple[Path, Path, Path]) -> None:
    bundle, data, base = setup
    out = base / "out-images"
    items = evaluate(bundle, data, out, n_bootstrap=20, gallery=3)["clip"]["disagreements"]
    assert [d["case_id"] for d in items] == ["over4", "miss2", "over2"]
    folder = out / "disagreements"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    import cv2

    for d in items:
        path = out / d["image"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert img.shape[0] == 240
    miss = cv2.imread(str(out / items[1]["image"]), cv2.IMREAD_COLOR)
    green = (miss[:, :, 1].astype(int) - miss[:, :, 2].astype(int)) > 60
    assert green.any()  # the lesion outline
    over = cv2.imread(str(out / items[0]["image"]), cv2.IMREAD_COLOR)
    assert abs(float(over.mean()) - level(4)) < 6  # the IV-bright frame, not a normal one
    page = (out / "report.html").read_text()
    assert stat.S_IMODE((out / "report.html").stat().st_mode) == 0o600
    assert "Largest disagreements" in page
    assert page.count('<figure><img alt="frame') == 3
    assert "over4" in page and "label 0, shown IV" in page


def test_gallery_zero_writes_no_images(setup: tuple[Path, Path, Path]) -> None:
    bundle, data, base = setup
    out = base / "out-none"
    result = evaluate(bundle, data, out, n_bootstrap=20, gallery=0)
    assert result["clip"]["disagreements"] == []
    assert not (out / "disagreements").exists()
    assert "Largest disagreements" not in (out / "report.html").read_text()
    with pytest.raises(ConfigError, match="gallery"):
        evaluate(bundle, data, base / "out-bad", gallery=-1)


def test_pooled_gallery_ranks_across_sets(setup: tuple[Path, Path, Path]) -> None:
    bundle, data, base = setup
    other = base / "data-b"
    shutil.copytree(data, other)
    out = base / "out-pooled"
    items = evaluate(bundle, [data, other], out, n_bootstrap=20, gallery=2)["clip"]["disagreements"]
    assert [d["case_id"] for d in items] == ["data/over4", "data-b/over4"]
    for d in items:
        assert (out / d["image"]).is_file()
    assert (out / "data" / "disagreements").is_dir()


def test_rerun_removes_stale_images(setup: tuple[Path, Path, Path]) -> None:
    bundle, data, base = setup
    out = base / "out-rerun"
    evaluate(bundle, data, out, n_bootstrap=20, gallery=3)
    assert len(list((out / "disagreements").glob("*.png"))) == 3
    items = evaluate(bundle, data, out, n_bootstrap=20, gallery=1)["clip"]["disagreements"]
    assert sorted(p.name for p in (out / "disagreements").glob("*.png")) == ["01-over4.png"]
    assert items[0]["image"] == "disagreements/01-over4.png"
    evaluate(bundle, data, out, n_bootstrap=20, gallery=0)
    assert not (out / "disagreements").exists()  # no patient images left behind


def test_an_image_that_fails_loses_nothing_else(
    setup: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pivh_live.errors import MediaError
    from pivh_live.evaluation import disagreements

    def broken(case: object, frame: int) -> None:
        raise MediaError("cannot decode the clip again")

    monkeypatch.setattr(disagreements, "_thumbnail", broken)
    bundle, data, base = setup
    out = base / "out-broken"
    items = evaluate(bundle, data, out, n_bootstrap=20, gallery=2)["clip"]["disagreements"]
    assert [d["image"] for d in items] == [None, None]
    assert (out / "metrics.json").is_file() and (out / "clips.csv").is_file()
    assert "Largest disagreements" in (out / "report.html").read_text()
    assert "over4: no image (cannot decode the clip again)" in caplog.text


def test_without_frame_labels_the_closest_valid_frame(setup: tuple[Path, Path, Path]) -> None:
    bundle, _, base = setup
    data = _make_dataset(base / "data-nolabels", [("n0", 0, 0), ("faint", 2, 1)], False)
    out = base / "out-nolabels"
    (item,) = evaluate(bundle, data, out, n_bootstrap=20)["clip"]["disagreements"]
    assert (item["case_id"], item["label"], item["shown"]) == ("faint", 2, 1)
    assert item["why"] == "closest call" and item["frame_label"] is None
    assert 8 <= item["frame"] <= 19  # the grade-I frames come closest to II
