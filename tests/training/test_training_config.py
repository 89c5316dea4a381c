"""Training config: defaults, JSON loading and the errors users see."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pivh_live.errors import ConfigError
from pivh_live.training.augment import AugmentConfig
from pivh_live.training.config import ModelConfig, TrainConfig, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.json"
    path.write_text(text)
    return path


def test_none_gives_defaults() -> None:
    config = load_config(None)
    assert config == TrainConfig() and config.version == 1
    assert config.model == ModelConfig() and config.augment == AugmentConfig()


def test_partial_config_keeps_other_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        json.dumps(
            {
                "epochs": 3,
                "lr": 1,
                "model": {"width": 8, "depth": [1, 1, 1, 1]},
                "augment": {"p_flip": 0.0, "gain": [0.9, 1.1]},
            }
        ),
    )
    config = load_config(path)
    assert config.epochs == 3 and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.model.width == 8 and config.model.depth == (1, 1, 1, 1)
    assert config.augment.gain == (0.9, 1.1) and config.augment.p_flip == 0.0
    assert config.batch_size == TrainConfig().batch_size


def test_round_trip_through_dict() -> None:
    config = TrainConfig(epochs=2, model=ModelConfig(width=8))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ModelConfig.from_dict(dataclasses.asdict(config.model)) == config.model


def test_unknown_key_is_named_with_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, '{"epoch": 3}'))
    message = str(err.value)
    assert "'epoch'" in message and "epochs" in message and "batch_size" in message
    assert "train.json" in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'model\.widht'.*width"):
        load_config(_write(tmp_path, '{"model": {"widht": 8}}'))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('{"epochs": "ten"}', r"'epochs' must be an integer, got string"),
        ('{"epochs": 2.5}', r"'epochs' must be an integer"),
        ('{"channels_last": 1}', r"'channels_last' must be a boolean"),
        ('{"nchw_stem": "yes"}', r"'nchw_stem' must be a boolean"),
        ('{"lr": true}', r"'lr' must be a number"),
        ('{"augment": {"gain": 1.2}}', r"'augment\.gain' must be a list of 2 numbers"),
        ('{"augment": {"gain": [1, 2, 3]}}', r"'augment\.gain' must be a list of 2 numbers"),
        ('{"model": {"depth": [1, "x", 1, 1]}}', r"'model\.depth' must be an integer"),
        ('{"model": 3}', r"model must be an object"),
    ],
)
def test_wrong_type_names_key_and_type(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(_write(tmp_path, text))


def test_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"malformed JSON at line 3 column 3"):
        load_config(_write(tmp_path, '{\n  "epochs": 3,\n  }\n'))


def test_not_an_object_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(_write(tmp_path, "[1, 2]"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.json")


def test_version_and_values_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="version 2 is not supported"):
        load_config(_write(tmp_path, '{"version": 2}'))
    with pytest.raises(ConfigError, match="schedule"):
        load_config(_write(tmp_path, '{"schedule": "step"}'))
    with pytest.raises(ConfigError, match="val_fraction"):
        TrainConfig(val_fraction=1.5)


def test_model_tta_is_checked(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, '{"model": {"tta": "hflip"}}')).model.tta == "hflip"
    with pytest.raises(ConfigError, match=r"model\.tta must be one of none, hflip"):
        load_config(_write(tmp_path, '{"model": {"tta": "vflip"}}'))


@pytest.mark.parametrize(
    ("augment", "pattern"),
    [
        ({"p_zoom": 1.5}, r"augment\.p_zoom must be in \[0, 1\]"),
        ({"zoom": [2.0, 1.5]}, r"augment\.zoom must be \[low, high\]"),
        ({"zoom": [0.5, 2.0]}, r"augment\.zoom must be >= 1"),
        ({"gamma": [0.0, 1.2]}, r"augment\.gamma must be above 0"),
        ({"max_shift": -0.1}, r"augment\.max_rotate_deg and augment\.max_shift"),
        ({"blur_sigma": [0.0, 1.0]}, r"augment\.blur_sigma must be above 0"),
        ({"noise_sigma": [-1.0, 2.0]}, r"speckle and noise_sigma >= 0"),
    ],
)
def test_augment_ranges_are_checked(augment: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        TrainConfig.from_dict({"augment": augment})
    TrainConfig.from_dict({"augment": {"p_zoom": 0.3, "zoom": [1.2, 2.0]}})  # the v26 values pass


def test_unknown_key_with_a_newline_stays_one_line() -> None:
    # Found by the fuzz test (tests/reliability): the key is echoed in the message.
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.\\n'") as info:
        TrainConfig.from_dict({"model": {"\n": None}})
    assert "\n" not in str(info.value)
