"""Property-based fuzzing of the parsers that take outside input.

Every parser either returns a valid object or raises our own error type
(which the CLI turns into one line); anything else (KeyError, TypeError,
ValueError from deep inside) is a bug. The transport's byte-level decoder
and the dataset's labels reader have their own fuzz tests in
tests/test_transport.py and tests/test_dataset.py; here are the pipeline's
message decoders on top of the transport, the training config, scanner
profiles, the model card, source specs and ROIs.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pivh_live.errors import ConfigError, ModelBundleError, SourceError
from pivh_live.frames import Roi
from pivh_live.pipeline.messages import (
    region_from_message,
    region_to_message,
    result_from_message,
    result_to_message,
    status_from_message,
    status_to_message,
)
from pivh_live.pipeline.results import PipelineStatus, RegionFrame
from pivh_live.transport import Message, TransportError, decode, encode

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


def _valid_messages() -> list[Message]:
    import pipeline_fakes as fakes

    from pivh_live.pipeline import InferenceStage

    frames = fakes.grade_frames([0] * 4 + [4] * 8, seed=5)
    stage = InferenceStage(fakes.FakeEngine())
    regions = [
        RegionFrame(i, 10**9 + i * 4 * 10**7, i * 0.04, f, Roi(3, 4, 48, 48), {"capture": 10**9})
        for i, f in enumerate(frames)
    ]
    results = [stage.process(r) for r in regions]
    status = PipelineStatus(5, "signal", "ok", (("capture", "running"),), 1)
    return [region_to_message(regions[-1]), result_to_message(results[-1]),
            status_to_message(status, 3)]  # fmt: skip


VALID = _valid_messages()
DECODERS = [region_from_message, result_from_message, status_from_message]


def _through_the_wire(msg: Message, meta: dict) -> Message | None:
    bad = Message(msg.kind, msg.seq, msg.t_capture_ns, msg.array, msg.stamps, {})
    object.__setattr__(bad, "metadata", meta)
    try:
        header, array = encode(bad)
        return decode([header, np.array(array, copy=True).data])
    except TransportError:
        return None  # refused at the transport: fine


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(tree: object, path: tuple, value: object, drop: bool) -> object:
    tree = json.loads(json.dumps(tree))
    node = tree
    for key in path[:-1]:
        node = node[key]
    if drop and isinstance(node, dict):
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return tree


@FUZZ
@given(which=st.integers(0, 2), pick=st.integers(0, 10**6), value=json_values, drop=st.booleans())
def test_pipeline_messages_with_one_field_changed(which, pick, value, drop) -> None:
    msg = VALID[which]
    meta = dict(msg.metadata)
    paths = _paths(meta)
    path = paths[pick % len(paths)]
    changed = _set(meta, path, value, drop)
    wired = _through_the_wire(msg, changed)  # type: ignore[arg-type]
    if wired is None:
        return
    with contextlib.suppress(TransportError):
        DECODERS[which](wired)


@FUZZ
@given(which=st.integers(0, 2), meta=st.dictionaries(st.text(max_size=12), json_values, max_size=8))
def test_pipeline_messages_with_random_metadata(which, meta) -> None:
    wired = _through_the_wire(VALID[which], meta)
    if wired is None:
        return
    with contextlib.suppress(TransportError):
        DECODERS[which](wired)


TRAIN_KEYS = ["epochs", "batch_size", "lr", "weight_decay", "schedule", "frame_stride",
              "samples_per_epoch", "val_fraction", "model", "augment", "seed", "device",
              "label_smoothing", "class_weight_power", "unknown_key"]  # fmt: skip


@FUZZ
@given(data=st.dictionaries(st.sampled_from(TRAIN_KEYS), json_values, max_size=6))
def test_training_config_from_any_json_object(data, tmp_path_factory) -> None:
    from pivh_live.training.config import load_config

    path = tmp_path_factory.mktemp("cfg") / "c.json"
    path.write_text(json.dumps(data))
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(data=st.binary(max_size=200))
def test_training_config_from_any_bytes(data, tmp_path_factory) -> None:
    from pivh_live.training.config import load_config

    path = tmp_path_factory.mktemp("cfg") / "c.json"
    path.write_bytes(data)
    with contextlib.suppress(ConfigError):
        load_config(path)


@FUZZ
@given(content=json_values | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_scanner_profile_from_any_file(content, tmp_path_factory) -> None:
    from pivh_live.profiles import load_profile, profile_path

    home = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(home))
        path = profile_path("fuzz")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        try:
            rois = load_profile("fuzz")
        except ConfigError:
            return
        assert all(isinstance(r, Roi) for r in rois.values())


@FUZZ
@given(card=st.dictionaries(st.sampled_from(["schema", "name", "version", "input", "outputs",
                                             "thresholds", "sha256", "files", "x"]),
                            json_values, max_size=7))  # fmt: skip
def test_model_card_from_any_json_object(card, tmp_path_factory) -> None:
    from pivh_live.bundle import load_bundle

    root = tmp_path_factory.mktemp("bundle")
    (root / "model.json").write_text(json.dumps(card))
    (root / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises((ModelBundleError, ConfigError)):
        load_bundle(root)


@FUZZ
@given(text=st.text(max_size=60))
def test_source_specs(text) -> None:
    from pivh_live.sources import create_source

    try:
        create_source(text)
    except (SourceError, ConfigError) as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(text=st.from_regex(r"(phantom|file|udp|v4l2):[?&=a-z0-9./]{0,30}", fullmatch=True))
def test_source_specs_near_valid(text) -> None:
    from pivh_live.sources import create_source

    try:
        create_source(text)
    except (SourceError, ConfigError) as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(text=st.text(alphabet="0123456789,-. x", max_size=25))
def test_roi_strings(text) -> None:
    from pivh_live.region import parse_roi

    try:
        roi = parse_roi(text)
    except ConfigError:
        return
    assert roi.w > 0 and roi.h > 0 and roi.x >= 0 and roi.y >= 0
