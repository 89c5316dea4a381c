"""Weight averaging: the update rule, and a training run that saves and resumes the average."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from test_train_loop import _state, make_dataset, tiny_config  # noqa: E402

from pivh_live.errors import ConfigError  # noqa: E402
from pivh_live.training.config import TrainConfig  # noqa: E402
from pivh_live.training.ema import WeightAverage  # noqa: E402
from pivh_live.training.train import train  # noqa: E402


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ema") / "data")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def test_average_follows_the_rule_and_counts_integer_buffers() -> None:
    model = _net()
    ema = WeightAverage(model, decay=0.5)
    w0 = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update()  # first update: decay min(0.5, 2/11)
    d = 2.0 / 11.0
    torch.testing.assert_close(ema.module[0].weight, d * w0 + (1 - d) * (w0 + 1.0))
    assert int(ema.module[1].num_batches_tracked) == 7
    for _ in range(50):
        ema.update()
    assert ema.current_decay() == 0.5
    torch.testing.assert_close(ema.module[0].weight, model[0].weight, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_decay_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_net(), 1.0)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=-0.1)


def test_checkpoint_holds_the_average_and_resume_restores_both(
    dataset_dir: Path, tmp_path: Path
) -> None:
    config = tiny_config(ema_decay=0.9)
    train(config, dataset_dir, tmp_path / "a", progress=False)
    last = _state(tmp_path / "a" / "last.pt")
    raw, avg = last["training_state"]["model"], last["state_dict"]
    assert last["training_state"]["ema_updates"] == 4  # 2 epochs x 2 steps
    # The average lags the raw weights, so they differ.
    name = next(k for k, v in raw.items() if v.dtype.is_floating_point and v.ndim > 1)
    assert not torch.allclose(raw[name], avg[name])

    train(config, dataset_dir, tmp_path / "b", progress=False, max_epochs=1)
    train(config, dataset_dir, tmp_path / "b", resume=True, progress=False)
    resumed = _state(tmp_path / "b" / "last.pt")
    assert resumed["training_state"]["ema_updates"] == 4
    for key, tensor in avg.items():
        torch.testing.assert_close(resumed["state_dict"][key], tensor, rtol=1e-5, atol=1e-6)
    for key, tensor in raw.items():
        torch.testing.assert_close(
            resumed["training_state"]["model"][key], tensor, rtol=1e-5, atol=1e-6
        )
