"""Training data loading, splitting and a tiny end-to-end training run with resume."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pivh_live.dataset import read_dataset  # noqa: E402
from pivh_live.errors import ConfigError, DatasetError  # noqa: E402
from pivh_live.media import write_video  # noqa: E402
from pivh_live.training.config import ModelConfig, TrainConfig  # noqa: E402
from pivh_live.training.data import (  # noqa: E402
    FrameDataset,
    FrameSet,
    class_weights,
    epoch_indices,
    load_frameset,
    small_lesion_weights,
    split_cases,
)
from pivh_live.training.train import lr_factor, train  # noqa: E402

N_FRAMES = 8
SIZE = 64
# case_id, clip grade, split
CASES = [
    ("c0", 0, "train"),
    ("c1", 3, "train"),
    ("c2", 1, "train"),
    ("c3", 0, "train"),
    ("v0", 0, "val"),
    ("v1", 4, "val"),
]


def _write_case(root: Path, case_id: str, grade: int, seed: int, with_labels: bool) -> None:
    """Speckle frames 64x48 (wider than tall: letterbox pads); lesion frames 2-5; frame 7 blank."""
    rng = np.random.default_rng(seed)
    h, w = 48, SIZE
    frames = np.clip(rng.rayleigh(30.0, (N_FRAMES, h, w)), 0, 255).astype(np.uint8)
    masks = np.zeros((N_FRAMES, h, w), dtype=bool)
    visible = np.full(N_FRAMES, 0)
    if grade > 0:
        for t in range(2, 6):
            masks[t, 14:26, 20 + 2 * t : 32 + 2 * t] = True
            visible[t] = grade
    frames[masks] = 200
    frames[N_FRAMES - 1] = 0
    visible[N_FRAMES - 1] = -1
    write_video(root / f"{case_id}.mp4", frames, 25.0)
    if with_labels:
        rows = ["frame,visible_grade,valid"]
        rows += [f"{t},{v},{int(v >= 0)}" for t, v in enumerate(visible)]
        (root / f"{case_id}.frames.csv").write_text("\n".join(rows) + "\n")
        np.savez_compressed(root / f"{case_id}.masks.npz", masks=masks)


def make_dataset(root: Path, weak: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["case_id,view,clip_grade,split"]
    for i, (case_id, grade, split) in enumerate(CASES):
        _write_case(root, case_id, grade, seed=100 + i, with_labels=case_id not in weak)
        lines.append(f"{case_id},coronal,{grade},{split}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "phantom.json").write_text(json.dumps({"generator": "test", "seed": 1}))
    return root


def tiny_config(**changes: object) -> TrainConfig:
    model = ModelConfig(width=4, depth=(1, 1, 1, 1), attention_heads=1, dropout=0.2)
    base = TrainConfig(
        epochs=2,
        batch_size=8,
        samples_per_epoch=16,
        frame_stride=1,
        val_frame_stride=1,
        lr=1e-2,
        model=model,
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny") / "data", weak=("c3",))


def test_frameset_targets_and_letterbox(dataset_dir: Path) -> None:
    cases = read_dataset(dataset_dir).cases
    fs = load_frameset(cases, 256, stride=2, progress=False)
    assert fs.images.shape == (len(cases) * N_FRAMES // 2, 256, 256)
    assert fs.images.dtype == np.uint8
    c1 = next(i for i, c in enumerate(fs.cases) if c.case_id == "c1")
    rows = fs.case_rows(c1)
    assert fs.frame_index[rows].tolist() == [0, 2, 4, 6]
    assert fs.grade[rows].tolist() == [0, 3, 3, 0]
    # 64x48 region -> content 256x192 centred: 32 rows of padding top and bottom.
    assert fs.cases[c1].box == (32, 0, 192, 256)
    assert fs.images[rows[0], :32].max() == 0 and fs.images[rows[0], 32:224].max() > 0
    assert set(fs.masks) >= {int(rows[1]), int(rows[2])}
    assert int(rows[0]) not in fs.masks
    # weak labels: case c3 has no frames.csv -> clip grade everywhere, valid 1, no masks
    c3 = next(i for i, c in enumerate(fs.cases) if c.case_id == "c3")
    assert not fs.cases[c3].has_frame_labels and not fs.cases[c3].has_masks
    assert (fs.valid[fs.case_rows(c3)] == 1).all()
    np.testing.assert_allclose(fs.t_s[rows], np.array([0, 2, 4, 6]) / 25.0)


def test_blank_frames_have_no_grade(dataset_dir: Path) -> None:
    cases = [c for c in read_dataset(dataset_dir).cases if c.case_id == "c1"]
    fs = load_frameset(cases, 256, stride=1, progress=False)
    assert fs.valid[-1] == 0 and fs.grade[-1] == -1
    assert (fs.valid[:-1] == 1).all()


def test_dataset_item_heatmap_follows_mask(dataset_dir: Path) -> None:
    cases = [c for c in read_dataset(dataset_dir).cases if c.case_id == "c1"]
    fs = load_frameset(cases, 256, stride=1, progress=False)
    item = FrameDataset(fs, None, seed=0, heatmap_size=32)[3]
    assert item["image"].shape == (1, 256, 256) and item["image"].dtype == torch.float32
    heat = item["heatmap"][0].numpy()
    assert heat.shape == (32, 32) and heat.min() >= 0.0 and heat.max() <= 1.0
    ys, _xs = np.nonzero(heat > 0.5)
    # mask rows 14:26 of 48 -> letterbox rows 32 + 4*(14..26) -> heatmap rows 11..16
    assert ys.min() >= 10 and ys.max() <= 17
    assert int(item["grade"]) == 3 and float(item["has_heatmap"]) == 1.0


def test_dataset_items_take_the_model_norm(dataset_dir: Path) -> None:
    from pivh_live.preprocess import normalize
    from pivh_live.training.train import _dataset

    cases = [c for c in read_dataset(dataset_dir).cases if c.case_id == "c1"]
    fs = load_frameset(cases, 256, stride=1, progress=False)
    base = tiny_config()
    config = base.replace(
        model=dataclasses.replace(base.model, norm="percentile"),
        augment=dataclasses.replace(base.augment, enabled=False),
    )
    dataset = _dataset(config, fs)
    item = dataset[3]["image"][0].numpy()
    np.testing.assert_array_equal(item, normalize(fs.images[3], "percentile"))
    plain = FrameDataset(fs, None, seed=0, heatmap_size=32)[3]["image"][0].numpy()
    np.testing.assert_array_equal(plain, normalize(fs.images[3]))
    assert not np.array_equal(item, plain)


def test_split_uses_split_column_else_stratified(dataset_dir: Path) -> None:
    cases = read_dataset(dataset_dir).cases
    train_cases, val_cases = split_cases(cases, 0.3, seed=0)
    assert [c.case_id for c in val_cases] == ["v0", "v1"]
    assert [c.case_id for c in train_cases] == ["c0", "c1", "c2", "c3"]

    class C:
        def __init__(self, i: int, g: int) -> None:
            self.case_id, self.clip_grade, self.split = f"k{i}", g, None

    many = [C(i, i % 5) for i in range(50)]
    tr, va = split_cases(many, 0.2, seed=3)
    assert len(va) == 10 and len(tr) == 40
    assert sorted(c.clip_grade for c in va) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert {c.case_id for c in va}.isdisjoint({c.case_id for c in tr})
    assert [c.case_id for c in split_cases(many, 0.2, seed=3)[1]] == [c.case_id for c in va]


def test_class_weights_inverse_frequency() -> None:
    grade = np.array([0] * 80 + [1] * 20 + [-1] * 7)
    w = class_weights(grade, 5, power=1.0)
    assert w[1] / w[0] == pytest.approx(4.0)
    assert (w[0] * 80 + w[1] * 20) / 100 == pytest.approx(1.0)
    assert w[2] == w[3] == w[4]
    assert np.allclose(class_weights(grade, 5, power=0.0), 1.0)


def test_epoch_indices_seeded() -> None:
    a = epoch_indices(10, 25, seed=1, epoch=0)
    assert len(a) == 25 and set(a.tolist()) == set(range(10))
    assert np.array_equal(a, epoch_indices(10, 25, seed=1, epoch=0))
    assert not np.array_equal(a, epoch_indices(10, 25, seed=1, epoch=1))


def _frames_with_lesions(areas: dict[int, int], grade: list[int]) -> FrameSet:
    n = len(grade)
    masks = {}
    for row, area in areas.items():
        m = np.zeros((16, 16), dtype=np.uint8)
        m.reshape(-1)[:area] = 255
        masks[row] = m
    return FrameSet(
        images=np.zeros((n, 16, 16), dtype=np.uint8),
        grade=np.asarray(grade, dtype=np.int8),
        valid=np.ones(n, dtype=np.int8),
        case_index=np.zeros(n, dtype=np.int32),
        frame_index=np.arange(n, dtype=np.int32),
        t_s=np.zeros(n),
        cases=(),
        masks=masks,
    )


def test_small_lesion_weights_boost_small_lesions_within_each_grade() -> None:
    # rows 0-3 normal, 4-7 grade IV (areas 10, 40, 80, 120), 8-9 grade I (5, 50), 10 ungraded
    grade = [0, 0, 0, 0, 4, 4, 4, 4, 1, 1, -1]
    fs = _frames_with_lesions({4: 10, 5: 40, 6: 80, 7: 120, 8: 5, 9: 50}, grade)
    w = small_lesion_weights(fs, factor=3.0, quantile=0.25)
    assert w is not None and w.sum() == pytest.approx(1.0)
    uniform = 1.0 / len(grade)
    # every grade (and grade 0, and the ungraded frame) keeps its share of draws
    g = np.asarray(grade)
    for k in (-1, 0, 1, 4):
        assert w[g == k].sum() == pytest.approx(uniform * (g == k).sum())
    # the smallest grade-IV lesion is drawn 3x as often as each larger one
    assert w[4] == pytest.approx(3 * w[5]) and w[5] == pytest.approx(w[7])
    assert w[8] == pytest.approx(3 * w[9])
    assert small_lesion_weights(fs, factor=1.0, quantile=0.25) is None
    assert small_lesion_weights(_frames_with_lesions({}, [0, 1]), 3.0, 0.25) is None


def test_weighted_epoch_indices_follow_the_weights() -> None:
    w = np.array([0.7, 0.1, 0.1, 0.1])
    a = epoch_indices(4, 4000, seed=1, epoch=0, weights=w)
    assert len(a) == 4000 and np.array_equal(a, epoch_indices(4, 4000, 1, 0, weights=w))
    assert 0.65 < np.mean(a == 0) < 0.75
    assert not np.array_equal(a, epoch_indices(4, 4000, seed=1, epoch=1, weights=w))
    with pytest.raises(ValueError, match="shape"):
        epoch_indices(5, 10, seed=1, epoch=0, weights=w)


def test_small_lesion_sampling_trains_and_is_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match="small_lesion_weight"):
        tiny_config(small_lesion_weight=0.5)
    with pytest.raises(ConfigError, match="small_lesion_quantile"):
        tiny_config(small_lesion_quantile=1.0)
    data = make_dataset(tmp_path / "data")
    masks = np.load(data / "c1.masks.npz")["masks"]
    masks[2, :, :26] = False  # one lesion frame of the grade-III case shows a smaller lesion
    np.savez_compressed(data / "c1.masks.npz", masks=masks)
    config = tiny_config(small_lesion_weight=3.0, epochs=1)
    with caplog.at_level("INFO", logger="pivh_live"):
        best = train(config, data, tmp_path / "run", progress=False)
    assert best.is_file()
    assert "size-balanced sampling" in caplog.text


@pytest.mark.parametrize("total", [1, 10, 1000])
def test_lr_schedules(total: int) -> None:
    one = [lr_factor(s, total, 0.1, "onecycle") for s in range(total)]
    cos = [lr_factor(s, total, 0.1, "cosine") for s in range(total)]
    assert one[0] == pytest.approx(0.04)
    assert max(one) <= 1.0 and max(cos) <= 1.0 and min(one) >= 1e-4 and min(cos) >= 0.0
    if total >= 10:
        warm = round(total * 0.1)
        assert one[warm] == pytest.approx(1.0) and cos[warm] == pytest.approx(1.0)
        assert np.all(np.diff(one[warm:]) <= 0) and np.all(np.diff(one[:warm]) > 0)
        assert one[-1] < 0.05 and cos[-1] < 0.05


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_train_writes_contract_checkpoint(dataset_dir: Path, tmp_path: Path) -> None:
    config = tiny_config()
    best = train(config, dataset_dir, tmp_path / "a", progress=False)
    assert best == tmp_path / "a" / "best.pt"
    ckpt = _state(best)
    assert ckpt["format"] == "pivh-live-checkpoint/1"
    for key in ("model_config", "state_dict", "thresholds", "train_config", "val_metrics"):
        assert key in ckpt
    assert ModelConfig.from_dict(ckpt["model_config"]) == config.model
    assert set(ckpt["thresholds"]) == {"pivh", "severe", "valid"}
    assert all(0.0 < v < 1.0 for v in ckpt["thresholds"].values())
    assert ckpt["data"]["n_train_cases"] == 4 and ckpt["data"]["n_val_cases"] == 2
    assert ckpt["data"]["dataset_meta"] == {"generator": "test", "seed": 1}
    assert ckpt["preprocess"] == {
        "input_size": 256,
        "letterbox": "pad-square-centre-zero",
        "scale": "1/255",
        "norm": "none",
    }
    assert "training_state" not in ckpt
    history = [json.loads(line) for line in (tmp_path / "a" / "history.jsonl").open()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(math.isfinite(h["train"]["total"]) for h in history)
    assert history[1]["train"]["total"] < history[0]["train"]["total"] * 1.5
    assert math.isfinite(history[-1]["val"]["clip_auc"])


@pytest.mark.slow  # five short training calls
def test_train_puts_the_denormal_flag_back(dataset_dir: Path, tmp_path: Path) -> None:
    from pivh_live.training.train import flushes_denormals

    assert not flushes_denormals()  # the IEEE default this suite runs under
    torch.set_flush_denormal(True)
    try:
        assert flushes_denormals()  # the probe sees the flag torch sets
    finally:
        torch.set_flush_denormal(False)
    train(tiny_config(), dataset_dir, tmp_path / "a", progress=False, max_epochs=1)
    assert not flushes_denormals()  # numpy and hypothesis see subnormals again
    with pytest.raises(DatasetError):  # also when training stops on an error
        train(tiny_config(), tmp_path / "missing", tmp_path / "b", progress=False)
    assert not flushes_denormals()


def test_resume_continues_exactly(dataset_dir: Path, tmp_path: Path) -> None:
    """The same run in two sittings: resume restores model, optimizer, scheduler and RNG."""
    config = tiny_config()
    train(config, dataset_dir, tmp_path / "a", progress=False)
    train(config, dataset_dir, tmp_path / "b", progress=False, max_epochs=1)
    assert len((tmp_path / "b" / "history.jsonl").read_text().splitlines()) == 1
    train(config, dataset_dir, tmp_path / "b", resume=True, progress=False)
    a, b = _state(tmp_path / "a" / "last.pt"), _state(tmp_path / "b" / "last.pt")
    assert b["epoch"] == 2
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], tensor, rtol=1e-5, atol=1e-6)

    # A changed config cannot resume; a fresh run in the same directory restarts the history.
    with pytest.raises(ConfigError, match=r"different settings \(epochs\)"):
        train(config.replace(epochs=3), dataset_dir, tmp_path / "b", resume=True, progress=False)
    with pytest.raises(ConfigError, match="already at epoch 2 of 2"):
        train(config, dataset_dir, tmp_path / "b", resume=True, progress=False)
    train(config, dataset_dir, tmp_path / "b", progress=False, max_epochs=1)
    assert len((tmp_path / "b" / "history.jsonl").read_text().splitlines()) == 1


def test_resume_without_last_checkpoint_fails(dataset_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"last\.pt not found"):
        train(tiny_config(), dataset_dir, tmp_path / "none", resume=True, progress=False)


def test_several_data_dirs_train_as_one_pool(dataset_dir: Path, tmp_path: Path) -> None:
    import shutil

    second = tmp_path / "second"
    shutil.copytree(dataset_dir, second)
    best = train(tiny_config(), [dataset_dir, second], tmp_path / "a", progress=False, max_epochs=1)
    data = _state(best)["data"]
    assert data["n_train_cases"] + data["n_val_cases"] == 12  # 6 cases in each directory
    assert data["train"] == [str(dataset_dir), str(second)]
    assert data["dataset_meta"] == [{"generator": "test", "seed": 1}] * 2


def test_separate_validation_set_trains_on_every_case(dataset_dir: Path, tmp_path: Path) -> None:
    import shutil

    val = tmp_path / "val"
    shutil.copytree(dataset_dir, val)
    (val / "phantom.json").write_text(json.dumps({"generator": "test", "seed": 5}))
    best = train(tiny_config(), dataset_dir, tmp_path / "a", val_dir=val, progress=False,
                 max_epochs=1)  # fmt: skip
    data = _state(best)["data"]
    n_cases = sum(
        1 for c in read_dataset(dataset_dir).cases if str(c.split or "").lower() != "test"
    )
    assert data["n_train_cases"] == n_cases  # nothing of --data is held out
    assert data["n_val_cases"] == n_cases
    assert data["val"] == str(val)
    assert data["val_dataset_meta"] == {"generator": "test", "seed": 5}
    assert data["dataset_meta"] == {"generator": "test", "seed": 1}


def _without_split_column(src: Path, dst: Path) -> Path:
    """A copy of the dataset without its split column: the seeded split decides."""
    import shutil

    shutil.copytree(src, dst)
    rows = (dst / "labels.csv").read_text().splitlines()
    (dst / "labels.csv").write_text("\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    return dst


def test_train_only_data_adds_cases_but_keeps_the_validation_split(
    dataset_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from pivh_live.cli import build_parser

    pool = _without_split_column(dataset_dir, tmp_path / "unsplit")
    extra = tmp_path / "extra"
    shutil.copytree(dataset_dir, extra)  # its split column says "val" for two: they train too
    (extra / "phantom.json").write_text(json.dumps({"generator": "test", "seed": 9}))
    config = tiny_config(val_fraction=0.34)
    alone = _state(train(config, pool, tmp_path / "a", progress=False, max_epochs=1))["data"]
    more = _state(
        train(config, pool, tmp_path / "b", progress=False, max_epochs=1, train_only=[extra])
    )["data"]
    assert more["val_case_ids"] == alone["val_case_ids"]
    assert more["n_val_cases"] == alone["n_val_cases"]
    assert more["n_train_cases"] == alone["n_train_cases"] + len(read_dataset(extra).cases)
    assert more["train_only"] == [str(extra)]
    assert more["train_only_meta"] == [{"generator": "test", "seed": 9}]
    assert alone["train_only"] == []
    args = build_parser().parse_args(
        ["train", "--data", str(pool), "--train-only", str(extra), str(pool)]
    )
    assert args.train_only == [extra, pool]


def test_split_seed_pins_the_split_while_seed_changes_the_run(
    dataset_dir: Path, tmp_path: Path
) -> None:

    data = _without_split_column(dataset_dir, tmp_path / "unsplit")
    runs = {
        "a": tiny_config(seed=0, val_fraction=0.34),
        "b": tiny_config(seed=5, split_seed=0, val_fraction=0.34),
        "c": tiny_config(seed=5, val_fraction=0.34),
    }
    ckpts = {
        k: _state(train(c, data, tmp_path / k, progress=False, max_epochs=1))
        for k, c in runs.items()
    }
    val_ids = {k: ckpt["data"]["val_case_ids"] for k, ckpt in ckpts.items()}
    assert val_ids["b"] == val_ids["a"]  # pinned split
    assert val_ids["c"] != val_ids["a"]  # the seed alone picks another split
    name = next(iter(ckpts["a"]["state_dict"]))
    assert not torch.equal(ckpts["a"]["state_dict"][name], ckpts["b"]["state_dict"][name])
    with pytest.raises(ConfigError, match="split_seed"):
        tiny_config(split_seed=-2)


def test_thresholds_sensitive_for_pivh_specific_for_severe() -> None:
    from pivh_live.training.validation import pick_thresholds

    truth = np.array([0] * 20 + [1] * 10 + [3] * 10)
    # Severe clips score 0.5-0.95; one normal clip scores 0.9 on p_severe.
    p_severe = np.r_[
        np.linspace(0.0, 0.3, 19), 0.9, np.linspace(0.0, 0.3, 10), np.linspace(0.5, 0.95, 10)
    ]
    p_pivh = np.r_[np.linspace(0.0, 0.4, 20), np.linspace(0.5, 1.0, 20)]
    thr = pick_thresholds({"truth": truth, "p_pivh": p_pivh, "p_severe": p_severe}, 0.95, 0.93)
    assert np.mean(p_pivh[truth >= 1] >= thr["pivh"]) >= 0.95
    assert np.mean(p_pivh[truth == 0] < thr["pivh"]) == 1.0
    spec = np.mean(p_severe[truth < 3] < thr["severe"])
    sens = np.mean(p_severe[truth >= 3] >= thr["severe"])
    assert spec >= 0.93 and sens == 1.0 and thr["severe"] > 0.3


def test_concatenate_freeing_stacks_blocks_and_lets_them_go() -> None:
    from pivh_live.training.data import _concatenate_freeing

    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 255, (n, 4, 4), dtype=np.uint8) for n in (3, 0, 5, 1)]
    expected = np.concatenate(blocks)
    out = _concatenate_freeing(blocks)
    assert blocks == []  # each block is released once copied
    assert out.dtype == np.uint8 and np.array_equal(out, expected)


@pytest.mark.skipif(sys.platform != "linux", reason="malloc_trim is glibc's (Linux)")
def test_release_free_memory_reaches_glibc() -> None:
    from pivh_live.training.data import release_free_memory

    assert release_free_memory() is True


def test_threaded_decoding_gives_the_same_frameset(dataset_dir: Path) -> None:
    cases = read_dataset(dataset_dir).cases
    one = load_frameset(cases, 128, stride=2, progress=False, workers=1)
    two = load_frameset(cases, 128, stride=2, progress=False, workers=3)
    for name in ("images", "grade", "valid", "case_index", "frame_index", "t_s"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    assert one.cases == two.cases
    assert sorted(one.masks) == sorted(two.masks)
    for row, mask in one.masks.items():
        np.testing.assert_array_equal(mask, two.masks[row])


def test_bf16_precision_trains_and_exports_float32(dataset_dir: Path, tmp_path: Path) -> None:
    from pivh_live.training.train import autocast_for

    cpu = torch.device("cpu")
    assert autocast_for("fp32", cpu)().__class__.__name__ == "nullcontext"
    with autocast_for("bf16", cpu)():
        y = torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4))
    bf16_supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert y.dtype == (torch.bfloat16 if bf16_supported else torch.float32)
    best = train(tiny_config(precision="bf16"), dataset_dir, tmp_path / "a", progress=False)
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert ckpt["train_config"]["precision"] == "bf16"
    floats = [v for v in ckpt["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float32 for v in floats)
    assert all(math.isfinite(float(v.abs().sum())) for v in floats)


def test_precision_and_decode_workers_are_checked() -> None:
    with pytest.raises(ConfigError, match="precision"):
        tiny_config(precision="fp16")
    with pytest.raises(ConfigError, match="decode_workers"):
        tiny_config(decode_workers=0)


def test_skipping_early_validation_keeps_the_weights(dataset_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(epochs=3)
    train(config, dataset_dir, tmp_path / "all", progress=False)
    train(config.replace(val_from_epoch=3), dataset_dir, tmp_path / "late", progress=False)
    history = [
        json.loads(line) for line in (tmp_path / "late" / "history.jsonl").read_text().splitlines()
    ]
    assert [h["val"] is None for h in history] == [True, True, False]
    assert [h["best"] for h in history] == [False, False, True]
    a = torch.load(tmp_path / "all" / "last.pt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "late" / "best.pt", map_location="cpu", weights_only=True)
    assert b["epoch"] == 3 and set(b["thresholds"]) >= {"pivh", "severe", "valid"}
    for name, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][name], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="val_from_epoch"):
        tiny_config(epochs=2, val_from_epoch=3)


def test_cli_epochs_override_still_validates_the_last_epoch(
    dataset_dir: Path, tmp_path: Path
) -> None:
    import argparse

    from pivh_live.training.train import train_from_cli

    config = tiny_config(epochs=4, val_from_epoch=4).to_dict()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    args = argparse.Namespace(
        config=path, epochs=1, seed=None, data=dataset_dir, out=tmp_path / "run",
        val_data=None, resume=False, threads=1,
    )  # fmt: skip
    best = train_from_cli(args)
    assert torch.load(best, map_location="cpu", weights_only=True)["epoch"] == 1


def test_a_case_that_fails_to_decode_stops_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    import pivh_live.training.data as data

    calls: list[int] = []

    def fake_decode(case: int, size: int, stride: int, fit: str) -> object:
        calls.append(case)
        if case == 0:
            raise data.DatasetError("case 0: corrupt video")
        np.linalg.svd(np.ones((200, 200)))  # ~1 ms of work that releases the GIL
        raise AssertionError("no result of a later case is ever used")

    monkeypatch.setattr(data, "_decode_case", fake_decode)
    with pytest.raises(data.DatasetError, match="corrupt video"):
        load_frameset(list(range(400)), 64, 1, progress=False, workers=2)
    assert len(calls) < 100  # the pending cases were cancelled, not decoded


def test_stretch_fit_fills_the_square_and_keeps_masks_aligned(dataset_dir: Path) -> None:
    cases = [c for c in read_dataset(dataset_dir).cases if c.case_id == "c1"]
    fs = load_frameset(cases, 256, stride=1, progress=False, fit="stretch")
    info = fs.cases[0]
    # 64x48 region -> the whole 256x256 square, rows 5.33x and columns 4x: 4/3 taller.
    assert info.box == (0, 0, 256, 256) and info.stretch == pytest.approx(4 / 3)
    assert fs.images[0, :32].max() > 0  # no padding rows any more
    item = FrameDataset(fs, None, seed=0, heatmap_size=32)[3]
    ys, _xs = np.nonzero(item["heatmap"][0].numpy() > 0.5)
    # mask rows 14:26 of 48 -> rows 74.7..138.7 of 256 -> heatmap rows 9..17
    assert ys.min() >= 9 and ys.max() <= 17
    assert load_frameset(cases, 256, stride=1, progress=False).cases[0].stretch == 1.0


def test_stretch_fit_trains_and_records_its_preprocessing(
    dataset_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(epochs=1)
    config = config.replace(model=dataclasses.replace(config.model, fit="stretch"))
    ckpt = _state(train(config, dataset_dir, tmp_path / "s", progress=False))
    assert ckpt["model_config"]["fit"] == "stretch"
    assert ckpt["preprocess"]["letterbox"] == "stretch-to-square"


def test_low_res_phase_is_checked() -> None:
    with pytest.raises(ConfigError, match="low_res_epochs"):
        tiny_config(epochs=2, low_res_epochs=2, low_res_size=32)
    with pytest.raises(ConfigError, match="low_res_size"):
        tiny_config(epochs=2, low_res_epochs=1, low_res_size=48)  # not a multiple of 32
    with pytest.raises(ConfigError, match="low_res_size"):
        tiny_config(epochs=2, low_res_epochs=1, low_res_size=256)  # not below input_size
    tiny_config(epochs=2, low_res_epochs=0, low_res_size=0)  # off


def test_low_res_batch_resizes_images_and_heatmap_targets() -> None:
    from pivh_live.training.train import low_res_batch

    image = torch.zeros(2, 1, 320, 320)
    image[:, :, 80:240, 80:240] = 1.0
    heat = torch.zeros(2, 1, 40, 40)
    heat[:, :, 10:30, 10:30] = 1.0
    small, small_heat = low_res_batch(image, heat, 256)
    assert small.shape == (2, 1, 256, 256) and small_heat.shape == (2, 1, 32, 32)
    assert float(small.min()) >= 0.0 and float(small.max()) <= 1.0
    # same content, same place: the bright square covers a quarter of the frame at any size
    assert float(small.mean()) == pytest.approx(0.25, abs=0.01)
    assert float(small_heat.mean()) == pytest.approx(float(heat.mean()), abs=0.01)
    assert float(small[0, 0, 128, 128]) == 1.0 and float(small[0, 0, 10, 10]) == 0.0


def _training_input_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that collects the side of every image PivhNet sees in training mode."""
    from pivh_live.training.network import PivhNet

    seen: list[int] = []
    forward = PivhNet.forward

    def spy(self: PivhNet, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.training:
            seen.append(int(image.shape[-1]))
        return forward(self, image)

    monkeypatch.setattr(PivhNet, "forward", spy)
    return seen


def test_low_res_epochs_train_on_smaller_batches(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first epochs see low_res_size inputs, later ones (and validation) the full size."""
    seen = _training_input_sizes(monkeypatch)
    config = tiny_config(epochs=3, low_res_epochs=2, low_res_size=64, model=ModelConfig(
        input_size=96, width=4, depth=(1, 1, 1, 1), attention_heads=1
    ))  # fmt: skip
    best = train(config, dataset_dir, tmp_path / "run", progress=False)
    steps = len(seen) // 3
    assert steps >= 1 and seen == [64] * (2 * steps) + [96] * steps
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert ckpt["train_config"]["low_res_epochs"] == 2 and ckpt["epoch"] >= 1


def test_resize_first_dataset_items_come_out_at_the_low_res_size(dataset_dir: Path) -> None:
    """set_epoch(size) resizes frame, mask and box before augmenting; None restores."""
    from pivh_live.training.augment import Augmenter
    from pivh_live.training.data import downsize

    cases = [c for c in read_dataset(dataset_dir).cases if c.case_id == "c1"]
    fs = load_frameset(cases, 256, stride=1, progress=False)
    plain = FrameDataset(fs, None, seed=0, heatmap_size=32)
    full = plain[3]
    plain.set_epoch(0, size=128)
    small = plain[3]
    assert small["image"].shape == (1, 128, 128) and small["heatmap"].shape == (1, 16, 16)
    # same content at half the size: the 2x2-pooled full frame, and the same lesion place
    pooled = torch.nn.functional.avg_pool2d(full["image"][None], 2)[0]
    assert float((small["image"] - pooled).abs().max()) < 2.0 / 255.0
    ys, _xs = np.nonzero(small["heatmap"][0].numpy() > 0.5)
    assert ys.min() >= 5 and ys.max() <= 9  # full-size heatmap rows 10..17, halved
    _img, _mask, box = downsize(fs.images[0], None, fs.cases[0].box, 128)
    assert fs.cases[0].box == (32, 0, 192, 256) and box == (16, 0, 96, 128)
    # augmentation runs on the small frame (its box) and stays seeded per (epoch, row)
    aug = FrameDataset(fs, Augmenter(), seed=0, heatmap_size=32)
    aug.set_epoch(1, size=128)
    a, b = aug[3], aug[3]
    assert a["image"].shape == (1, 128, 128) and torch.equal(a["image"], b["image"])
    plain.set_epoch(0)
    assert torch.equal(plain[3]["image"], full["image"])


def test_resize_first_low_res_epochs_train_on_smaller_items(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """low_res_resize_first: low-res epochs get small items; the batch is not resized again."""
    import pivh_live.training.train as train_mod

    def no_batch_resize(*_args: object) -> None:
        raise AssertionError("batch resized although items are already low-res")

    seen = _training_input_sizes(monkeypatch)
    monkeypatch.setattr(train_mod, "low_res_batch", no_batch_resize)
    config = tiny_config(
        epochs=3, low_res_epochs=2, low_res_size=64, low_res_resize_first=True,
        model=ModelConfig(input_size=96, width=4, depth=(1, 1, 1, 1), attention_heads=1),
    )  # fmt: skip
    train(config, dataset_dir, tmp_path / "run", progress=False)
    steps = len(seen) // 3
    assert steps >= 1 and seen == [64] * (2 * steps) + [96] * steps


def test_cli_epochs_override_keeps_the_low_res_share(dataset_dir: Path, tmp_path: Path) -> None:
    import argparse

    from pivh_live.training.train import train_from_cli

    model = {"input_size": 96, "width": 4, "depth": [1, 1, 1, 1], "attention_heads": 1}
    config = {**tiny_config(epochs=4).to_dict(), "low_res_epochs": 2, "low_res_size": 64}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config, "model": model}))
    args = argparse.Namespace(
        config=path, epochs=2, seed=None, data=dataset_dir, out=tmp_path / "run",
        val_data=None, resume=False, threads=1,
    )  # fmt: skip
    best = train_from_cli(args)
    saved = torch.load(best, map_location="cpu", weights_only=True)["train_config"]
    assert saved["epochs"] == 2 and saved["low_res_epochs"] == 1


def test_nchw_stem_changes_layouts_not_results() -> None:
    """keep_stem_nchw: stem weights NCHW, the rest NHWC, same outputs and gradients."""
    import copy

    from pivh_live.training.network import PivhNet
    from pivh_live.training.train import keep_stem_nchw

    torch.manual_seed(0)
    cfg = ModelConfig(input_size=64, width=16, depth=(1, 1, 1, 1), attention_heads=1, dropout=0.0)
    nhwc = PivhNet(cfg).train().to(memory_format=torch.channels_last)
    mixed = copy.deepcopy(nhwc)
    keep_stem_nchw(mixed)
    seen: list[torch.Tensor] = []
    mixed.stages[0].register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    stem_weight = mixed.stem[2][0].weight  # (16, 8, 3, 3): the layouts differ
    assert stem_weight.is_contiguous() and not stem_weight.is_contiguous(
        memory_format=torch.channels_last
    )
    assert mixed.stages[1][0].pw[0].weight.is_contiguous(memory_format=torch.channels_last)
    image = torch.rand(4, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    outs = [model(image) for model in (nhwc, mixed)]
    assert seen and seen[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(*outs, strict=True):  # float32 sums in another order
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(a.abs().max())))
    for out in outs:
        sum(o.float().square().mean() for o in out).backward()
    # float32 sums in another order: about 1e-5 of the largest gradient
    scale = max(float(p.grad.abs().max()) for p in nhwc.parameters())
    for (name, a), b in zip(nhwc.named_parameters(), mixed.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4 * scale, msg=name)


def test_training_with_nchw_stem(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pivh_live.training.train as train_mod

    calls: list[object] = []
    real = train_mod.keep_stem_nchw
    monkeypatch.setattr(train_mod, "keep_stem_nchw", lambda m: (calls.append(m), real(m)))
    best = train(tiny_config(nchw_stem=True), dataset_dir, tmp_path / "run", progress=False)
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert len(calls) == 1 and ckpt["train_config"]["nchw_stem"] is True
    assert all(math.isfinite(float(v.float().abs().sum())) for v in ckpt["state_dict"].values())


@pytest.mark.slow  # compiles the forward and backward graphs once (about 20-60 s)
def test_torch_compile_trains_the_shared_weights(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled step updates the plain module's weights, which are validated and saved."""
    import shutil

    import pivh_live.training.train as train_mod

    if not any(shutil.which(c) for c in train_mod.CXX_COMPILERS):
        pytest.skip("no C++ compiler: torch.compile cannot build CPU kernels here")
    wrapped: list[object] = []
    initial: dict[str, torch.Tensor] = {}
    real = train_mod.compiled_for_training

    def spy(model: object) -> object:
        initial.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        wrapped.append(real(model))
        return wrapped[-1]

    monkeypatch.setattr(train_mod, "compiled_for_training", spy)
    # No dropout: compiled kernels draw their random numbers differently.
    model = ModelConfig(width=4, depth=(1, 1, 1, 1), attention_heads=1, dropout=0.0)
    base = train(tiny_config(epochs=1, model=model), dataset_dir, tmp_path / "e", progress=False)
    best = train(
        tiny_config(epochs=1, model=model, torch_compile=True),
        dataset_dir,
        tmp_path / "c",
        progress=False,
    )
    assert len(wrapped) == 1 and wrapped[0].__class__.__name__ == "OptimizedModule"
    import torch._dynamo

    assert torch._dynamo.config.suppress_errors is False  # the run's fallback is put back
    plain = torch.load(base, map_location="cpu", weights_only=True)["state_dict"]
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert ckpt["train_config"]["torch_compile"] is True
    saved = ckpt["state_dict"]
    assert list(saved) == list(plain)  # the plain module's keys, no "_orig_mod." prefix

    def dist(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        keys = [k for k in a if a[k].is_floating_point()]
        return float(torch.cat([(a[k] - b[k]).flatten() for k in keys]).norm())

    # Same start and batches: the compiled run lands next to the eager one, far from
    # where both started (so the compiled steps did update the saved weights).
    assert dist(plain, initial) > 1e-3
    assert dist(saved, plain) < 0.1 * dist(saved, initial)


def test_torch_compile_without_a_compiler_trains_uncompiled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import pivh_live.training.train as train_mod
    from pivh_live.training.network import PivhNet

    model = PivhNet(ModelConfig(width=4, depth=(1, 1, 1, 1), attention_heads=1))
    monkeypatch.setattr(train_mod.shutil, "which", lambda _name: None)
    with caplog.at_level("WARNING", logger="pivh_live.training.train"):
        assert train_mod.compiled_for_training(model) is model
    assert "no C++ compiler" in caplog.text and "install g++" in caplog.text
