"""Alert behaviour metrics: exact values of the pure functions, and the dataset runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pipeline_fakes import grade_frames, make_tiny_bundle, write_clip

from pivh_live.pipeline.alert_metrics import (
    LesionEpisode,
    aggregate,
    alert_delays,
    alert_onsets,
    changes,
    clip_alert_metrics,
    clip_duration_s,
    grade_changes,
    lesion_episodes,
    main,
    measure_dataset,
)

T = np.arange(20) * 0.1


def _mask(n: int, *ranges: tuple[int, int]) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    for a, b in ranges:
        out[a : b + 1] = True
    return out


def test_onsets_changes_and_durations() -> None:
    assert alert_onsets([False, True, True, False, True]).tolist() == [1, 4]
    assert alert_onsets([True, True]).tolist() == [0]
    assert alert_onsets([]).tolist() == []
    assert changes([False, True, True, False, True]) == 3
    assert changes([1]) == 0
    assert grade_changes([-1, 0, 0, 1, -1, 1, 3]) == 2  # 0 -> 1 -> (hidden) 1 -> 3
    assert clip_duration_s([0.0, 0.04, 0.08]) == pytest.approx(0.12)
    assert clip_duration_s([5.0]) == 0.0


def test_lesion_episodes_merge_short_gaps() -> None:
    visible = np.zeros(20, dtype=int)
    visible[2:5] = 2
    visible[6:8] = 3  # 0.2 s after the last: same episode
    visible[15:17] = 1  # 0.8 s after: a new one
    visible[10] = 0
    assert lesion_episodes(T, visible) == [(2, 7), (15, 16)]
    assert lesion_episodes(T, visible, merge_gap_s=0.1) == [(2, 4), (6, 7), (15, 16)]
    assert lesion_episodes(T, np.full(20, -1)) == []


def test_alert_delays_per_episode() -> None:
    visible = np.zeros(20, dtype=int)
    visible[2:8] = 3
    visible[15:17] = 3
    alert = _mask(20, (5, 9), (16, 18))
    episodes = alert_delays(T, visible, alert)
    assert episodes == [
        LesionEpisode(2, 7, 0.2, pytest.approx(0.7), False, pytest.approx(0.3)),
        LesionEpisode(15, 16, 1.5, 1.6, False, pytest.approx(0.1)),
    ]
    # The alert still held from the first pass when the lesion shows again: no delay measured.
    held = alert_delays(T, visible, _mask(20, (5, 16)))
    assert held[1].already_on and held[1].delay_s is None and held[1].detected
    # An onset later than late_s after the lesion left does not count: a miss.
    late = alert_delays(T, visible, _mask(20, (19, 19)), late_s=0.2)
    assert [e.delay_s for e in late] == [None, None] and not late[0].detected
    assert alert_delays(T, visible, _mask(20, (19, 19)), late_s=0.3)[1].delay_s == pytest.approx(
        0.4
    )


def test_clip_metrics_and_pooled_rates() -> None:
    visible = np.zeros(20, dtype=int)
    visible[2:8] = 3
    lesion = clip_alert_metrics(
        "a", 3, T, visible, _mask(20, (5, 9)), [-1] * 3 + [0] * 2 + [3] * 5 + [0] * 10
    )
    assert (lesion.duration_s, lesion.alert_flips, lesion.alert_onsets) == (
        pytest.approx(2.0), 2, 1,
    )  # fmt: skip
    assert lesion.grade_changes == 2
    normal = clip_alert_metrics("b", 0, T, np.zeros(20), _mask(20, (3, 4), (10, 12)), [0] * 20)
    assert normal.alert_onsets == 2 and normal.episodes == ()
    pooled = aggregate([lesion, normal])
    assert pooled["minutes"] == pytest.approx(4.0 / 60)
    assert pooled["alert_flips_per_minute"] == pytest.approx(6 / (4.0 / 60))
    assert pooled["grade_changes_per_minute"] == pytest.approx(2 / (4.0 / 60))
    assert pooled["false_alerts_per_hour"] == pytest.approx(2 / (2.0 / 3600))
    assert pooled["lesion_episodes"] == 1 and pooled["episodes_detected"] == 1
    assert pooled["delay_s"]["median"] == pytest.approx(0.3)
    empty = aggregate([])
    assert empty["false_alerts_per_hour"] is None and empty["delay_s"]["n"] == 0


def _dataset(root: Path) -> Path:
    """Two hand-made cases in the dataset format: a lesion sweep and a normal clip."""
    grades = {"c3": [0] * 10 + [3] * 25 + [0] * 15, "c0": [0] * 40}
    root.mkdir()
    rows = ["case_id,view,clip_grade,side"]
    for case, g in grades.items():
        write_clip(root / f"{case}.mkv", grade_frames(g, seed=len(g)), fps=25.0)
        lines = ["frame,visible_grade"] + [f"{i},{v}" for i, v in enumerate(g)]
        (root / f"{case}.frames.csv").write_text("\n".join(lines) + "\n")
        clip_grade = max(g)
        rows.append(f"{case},coronal,{clip_grade},{'left' if clip_grade else 'none'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_measure_dataset_runs_the_pipeline(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnx")
    bundle = make_tiny_bundle(tmp_path / "bundle")
    data = _dataset(tmp_path / "data")
    clips, pooled = measure_dataset(bundle, data)
    by_id = {c.case_id: c for c in clips}
    assert set(by_id) == {"c3", "c0"}
    lesion = by_id["c3"]
    assert len(lesion.episodes) == 1 and lesion.episodes[0].start == 10
    delay = lesion.episodes[0].delay_s
    # EMA (tau 0.3 s) from ~0 to ~1 crosses 0.5 after about tau*ln2, then 0.3 s onset.
    assert delay is not None and 0.4 <= delay <= 0.7
    assert by_id["c0"].alert_onsets == 0 and pooled["false_alerts_per_hour"] == 0.0
    assert pooled["delay_s"]["median"] == delay

    out = tmp_path / "metrics.json"
    assert main(["--model", str(bundle), "--data", str(data), "--out", str(out)]) == 0
    assert "delay lesion -> alert: median" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["pooled"]["delay_s"]["median"] == pytest.approx(delay)
    assert main(["--model", str(bundle), "--data", str(tmp_path / "none")]) == 1
