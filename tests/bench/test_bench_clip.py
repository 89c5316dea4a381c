import numpy as np
import pytest
from bench_fakes import ROI, write_cached_clip

from pivh_live.bench import clip as clip_mod
from pivh_live.bench.clip import LoopedClipSource, cached_screen_clip, parse_resolution
from pivh_live.errors import ConfigError


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000_000
        self.slept: list[float] = []

    def clock(self) -> int:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += round(s * 1e9)


def _frames(n=4):
    return np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 6, 8), np.uint8)


def test_paced_source_stamps_due_times_and_waits_for_the_next_frame():
    ft = FakeTime()
    src = LoopedClipSource(_frames(), 50.0, clock=ft.clock, sleep=ft.sleep)
    with src:
        a, b = src.read(), src.read()
    assert (a.seq, b.seq) == (0, 1)
    assert b.t_capture_ns - a.t_capture_ns == 20_000_000
    assert ft.slept == [pytest.approx(0.02)]
    assert src.stats.dropped == 0 and b.media_time_s == pytest.approx(0.02)


def test_slow_reader_gets_the_newest_frame_and_drops_are_counted():
    ft = FakeTime()
    src = LoopedClipSource(_frames(), 50.0, clock=ft.clock, sleep=ft.sleep)
    with src:
        first = src.read()
        ft.now += 75_000_000  # the loop was busy for 3.75 frame periods
        late = src.read()
    # Frames 1 and 2 were overwritten; frame 3 (due 60 ms after the first) is delivered,
    # stamped with its due time, not with the moment it was read.
    assert src.stats.dropped == 2
    assert late.t_capture_ns - first.t_capture_ns == 60_000_000
    assert int(late.image[0, 0]) == 3
    assert late.seq == 1  # seq counts delivered frames


def test_fast_source_loops_without_waiting():
    ft = FakeTime()
    src = LoopedClipSource(_frames(3), 0.0, clock=ft.clock, sleep=ft.sleep)
    with src:
        values = [int(src.read().image[0, 0]) for _ in range(7)]
    assert values == [0, 1, 2, 0, 1, 2, 0] and ft.slept == []


def test_parse_resolution():
    assert parse_resolution("1920x1080") == (1920, 1080)
    for bad in ("1920", "axb", "10x10"):
        with pytest.raises(ConfigError):
            parse_resolution(bad)


def test_cached_clip_is_memory_mapped_and_rendered_once(tmp_path, monkeypatch):
    calls = []

    def fake_render(w, h, n, seed, grade):
        calls.append((w, h, n))
        rng = np.random.default_rng(seed)
        return clip_mod.ScreenClip(rng.integers(0, 255, (n, h, w), dtype=np.uint8), ROI,
                                   seed, grade)  # fmt: skip

    monkeypatch.setattr(clip_mod, "render_screen_clip", fake_render)
    a = cached_screen_clip(64, 48, 3, seed=1, cache_dir=tmp_path)
    b = cached_screen_clip(64, 48, 3, seed=1, cache_dir=tmp_path)
    assert calls == [(64, 48, 3)]
    assert isinstance(b.frames, np.memmap) and np.array_equal(a.frames, b.frames)
    assert b.roi == ROI and b.resolution == (64, 48)


def test_a_prewritten_cache_is_used(tmp_path, monkeypatch):
    frames = write_cached_clip(tmp_path, n=5)
    monkeypatch.setattr(clip_mod, "render_screen_clip", lambda *a: pytest.fail("rendered"))
    c = cached_screen_clip(240, 180, 5, cache_dir=tmp_path)
    assert np.array_equal(c.frames, frames) and c.roi == ROI


def test_image_folder_holds_every_frame_and_the_rate(tmp_path):
    from pivh_live.bench.clip import ScreenClip, write_image_folder
    from pivh_live.media import iter_frames

    frames = write_cached_clip(tmp_path / "c", n=4)
    folder = write_image_folder(ScreenClip(frames, ROI, 0, 3), tmp_path / "bmp", 60.0)
    write_image_folder(ScreenClip(frames, ROI, 0, 3), tmp_path / "bmp", 60.0)  # idempotent
    decoded = list(iter_frames(folder))
    assert len(decoded) == 4 and (folder / "fps.txt").read_text() == "60\n"
    assert all(np.array_equal(d.image, f) for d, f in zip(decoded, frames, strict=True))
    assert decoded[1].t == pytest.approx(1 / 60)
    assert not list(folder.glob(".*"))
