"""PivhNet outputs, FLOP/parameter counts, loss behaviour and ONNX export parity."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pivh_live.training.config import ModelConfig, TrainConfig  # noqa: E402
from pivh_live.training.network import (  # noqa: E402
    PivhNet,
    compute_loss,
    count_flops,
    count_parameters,
    grade_cross_entropy,
    soft_dice,
)

TINY = ModelConfig(width=4, depth=(1, 1, 1, 1), attention_heads=1)


def test_default_output_shapes_and_dtypes() -> None:
    torch.manual_seed(0)
    model = PivhNet(ModelConfig()).eval()
    x = torch.rand(3, 1, 256, 256)
    with torch.no_grad():
        grade, valid, heat = model(x)
    assert grade.shape == (3, 5) and valid.shape == (3, 1) and heat.shape == (3, 1, 32, 32)
    assert grade.dtype == valid.dtype == heat.dtype == torch.float32
    assert torch.isfinite(grade).all() and torch.isfinite(heat).all()


def test_batch_items_are_independent_in_eval() -> None:
    torch.manual_seed(0)
    model = PivhNet(TINY).eval()
    x = torch.rand(4, 1, 256, 256)
    with torch.no_grad():
        full = model(x)
        single = model(x[2:3])
    for a, b in zip(full, single, strict=True):
        torch.testing.assert_close(a[2:3], b, rtol=1e-4, atol=1e-5)


def test_default_model_fits_budget() -> None:
    model = PivhNet(ModelConfig())
    params, flops = count_parameters(model), count_flops(model)
    assert 50_000 < params < 1_000_000
    # conv/linear FLOPs of one 256x256 frame; latency in docs/training.md
    assert 20e6 < flops < 300e6
    assert count_flops(PivhNet(TINY)) < flops


def test_count_flops_counts_a_known_conv() -> None:
    class One(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = ModelConfig(input_size=64)
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    assert count_flops(One()) == 2 * 64 * 64 * 2 * 9  # type: ignore[arg-type]


def test_model_config_rejects_bad_shapes() -> None:
    from pivh_live.errors import ConfigError

    with pytest.raises(ConfigError, match="input_size"):
        ModelConfig(input_size=250)
    with pytest.raises(ConfigError, match="4 entries"):
        ModelConfig(depth=(1, 1))


def _batch(n: int, grades: list[int]) -> dict[str, torch.Tensor]:
    heat = torch.zeros(n, 1, 32, 32)
    heat[0, 0, 10:14, 10:14] = 1.0
    return {
        "grade": torch.tensor(grades),
        "valid": torch.tensor([1.0 if g >= 0 else 0.0 for g in grades]),
        "heatmap": heat,
        "has_heatmap": torch.ones(n),
    }


def test_loss_ignores_ungraded_frames() -> None:
    torch.manual_seed(0)
    model = PivhNet(TINY)
    x = torch.rand(3, 1, 256, 256, requires_grad=True)
    grade_logits, valid_logit, heat = model(x)
    grade_logits.retain_grad()
    total, parts = compute_loss(
        (grade_logits, valid_logit, heat), _batch(3, [2, -1, 0]), torch.ones(5), TrainConfig()
    )
    total.backward()
    assert all(np.isfinite(v) for v in parts.values())
    assert grade_logits.grad[1].abs().max() == 0.0
    assert grade_logits.grad[0].abs().max() > 0.0


def test_ordinal_term_prefers_near_misses() -> None:
    config = TrainConfig(w_grade=0.0, w_valid=0.0, w_heatmap=0.0, w_ordinal=1.0)
    batch = _batch(1, [4])
    near = torch.tensor([[-5.0, -5.0, -5.0, 5.0, -5.0]])  # says III
    far = torch.tensor([[5.0, -5.0, -5.0, -5.0, -5.0]])  # says 0
    rest = (torch.zeros(1, 1), torch.zeros(1, 1, 32, 32))
    near_loss, _ = compute_loss((near, *rest), batch, torch.ones(5), config)
    far_loss, _ = compute_loss((far, *rest), batch, torch.ones(5), config)
    assert float(near_loss) < 0.5 * float(far_loss)


def test_focal_gamma_zero_is_the_weighted_smoothed_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 5)
    target = torch.tensor([0, 4, 4, 1, 2, 3])
    weights = torch.tensor([0.5, 1.0, 1.5, 2.0, 2.5])
    probs = torch.softmax(logits, dim=1)
    expect = torch.nn.functional.cross_entropy(logits, target, weight=weights, label_smoothing=0.05)
    got = grade_cross_entropy(logits, probs, target, weights, 0.05, 0.0)
    assert float(got) == pytest.approx(float(expect), rel=1e-6)
    # Unmodulated per-frame terms through the focal path reproduce it too (gamma -> 0).
    near_zero = grade_cross_entropy(logits, probs, target, weights, 0.05, 1e-9)
    assert float(near_zero) == pytest.approx(float(expect), rel=1e-6)


def test_focal_term_shifts_weight_from_easy_to_hard_frames() -> None:
    target = torch.tensor([4, 4])
    easy = torch.tensor([[-4.0, -4.0, -4.0, -4.0, 4.0]])  # confident and right
    hard = torch.tensor([[3.0, -1.0, -1.0, -1.0, 0.0]])  # says 0 for a grade IV
    ones = torch.ones(5)

    def share(gamma: float) -> float:
        logits = torch.cat([easy, hard])
        probs = torch.softmax(logits, dim=1)
        per = [
            float(grade_cross_entropy(lg, pr, t, ones, 0.0, gamma))
            for lg, pr, t in zip(logits[:, None], probs[:, None], target[:, None], strict=True)
        ]
        return per[1] / (per[0] + per[1])

    assert share(2.0) > share(0.0) > 0.5
    assert share(2.0) > 0.999


def test_focal_gamma_reaches_the_loss_and_is_checked_by_the_config() -> None:
    from pivh_live.errors import ConfigError

    batch = _batch(2, [4, 0])
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.5], [3.0, 0.0, 0.0, 0.0, 0.0]])
    rest = (torch.zeros(2, 1), torch.zeros(2, 1, 32, 32))
    plain = compute_loss((logits, *rest), batch, torch.ones(5), TrainConfig())[1]
    focal = compute_loss((logits, *rest), batch, torch.ones(5), TrainConfig(focal_gamma=2.0))[1]
    assert focal["grade"] < plain["grade"]
    assert focal["ordinal"] == pytest.approx(plain["ordinal"])
    assert TrainConfig.from_dict({}).focal_gamma == 0.0  # older configs keep their loss
    with pytest.raises(ConfigError, match="focal_gamma"):
        TrainConfig(focal_gamma=-1.0)


def test_lesion_pool_feeds_fine_features_to_the_grade_head() -> None:
    config = ModelConfig(width=4, depth=(1, 1, 1, 1), attention_heads=1, lesion_pool=True)
    torch.manual_seed(0)
    model = PivhNet(config).eval()
    plain = PivhNet(TINY)
    hm = model.heatmap_head[2].in_channels
    assert model.grade_head.in_features == plain.grade_head.in_features + hm
    with torch.no_grad():  # only the lesion-pooled inputs reach the grade logits
        model.grade_head.weight[:, :-hm] = 0.0
        model.grade_head.bias.zero_()
        x = torch.rand(2, 1, 64, 64)
        grade, _, heat = model(x)
    assert heat.shape == (2, 1, 8, 8)
    assert grade.abs().sum() > 0 and not torch.allclose(grade[0], grade[1])
    assert ModelConfig.from_dict({"width": 4}).lesion_pool is False  # old checkpoints


def test_mirror_context_pools_what_lies_across_the_midline() -> None:
    config = ModelConfig(width=4, depth=(1, 1, 1, 1), attention_heads=1, mirror_context=True)
    model = PivhNet(config).eval()
    plain = PivhNet(TINY)
    c32 = model.valid_head.in_features
    heads = config.attention_heads + 1  # the learned head plus the heatmap's
    assert model.grade_head.in_features == plain.grade_head.in_features + heads * c32
    # Stride-32 features of a 64x64 frame (a 2x2 grid): channel 0 is on in the left
    # column, channel 1 in the right one; the learned head attends to channel 0.
    designed = torch.zeros(1, c32, 2, 2)
    designed[0, 0, :, 0] = 1.0
    designed[0, 1, :, 1] = 1.0
    model.stages[3].register_forward_hook(lambda _m, _i, _o: designed)
    seen: list[torch.Tensor] = []
    model.grade_head.register_forward_hook(lambda _m, i, _o: seen.append(i[0]))
    with torch.no_grad():
        model.attention.weight.zero_()
        model.attention.bias.zero_()
        model.attention.weight[0, 0] = 30.0
        model(torch.rand(1, 1, 64, 64))
    own, across = seen[0][0, : 2 * c32].view(2, c32)  # the learned head's pooled halves
    assert own[0] == pytest.approx(1.0, abs=1e-6) and own[1] == pytest.approx(0.0, abs=1e-6)
    assert across[0] == pytest.approx(0.0, abs=1e-6)
    assert across[1] == pytest.approx(1.0, abs=1e-6)
    assert ModelConfig.from_dict({"width": 4}).mirror_context is False  # old checkpoints


def test_frame_dice_weighs_a_small_missed_lesion_like_a_big_one() -> None:
    target = torch.zeros(2, 1, 16, 16)
    target[0, 0, 0:12, 0:12] = 1.0  # a big clot, found
    target[1, 0, 3:5, 3:5] = 1.0  # a small nodule, missed
    p = target.clone()
    p[1] = 0.0
    by_frame = float(soft_dice(p, target, "frame"))
    by_batch = float(soft_dice(p, target, "batch"))
    assert by_batch < 0.05  # the big clot's pixels hide the miss
    assert by_frame == pytest.approx(0.5 * (1.0 - 1.0 / 5.0), abs=1e-3)
    assert float(soft_dice(target, target, "frame")) < 0.01
    # frames without a lesion do not enter the per-frame ratio (the BCE covers them)
    empty = torch.zeros(1, 1, 16, 16)
    assert float(soft_dice(torch.full_like(empty, 0.9), empty, "frame")) == 0.0
    both = torch.cat([target[1:], empty])
    assert float(soft_dice(torch.cat([p[1:], torch.ones_like(empty)]), both, "frame")) == (
        pytest.approx(float(soft_dice(p[1:], target[1:], "frame")))
    )


def test_frame_dice_reaches_the_loss_and_is_checked_by_the_config() -> None:
    from pivh_live.errors import ConfigError

    batch = _batch(2, [2, 0])
    rest = (torch.zeros(2, 5), torch.zeros(2, 1))
    heat = torch.full((2, 1, 32, 32), -4.0)
    losses = {
        mode: compute_loss((*rest, heat), batch, torch.ones(5), TrainConfig(heatmap_dice=mode))[1]
        for mode in ("batch", "frame")
    }
    assert losses["frame"]["heatmap"] != pytest.approx(losses["batch"]["heatmap"])
    assert TrainConfig.from_dict({}).heatmap_dice == "batch"  # older configs keep their loss
    with pytest.raises(ConfigError, match="heatmap_dice"):
        TrainConfig(heatmap_dice="pixel")
