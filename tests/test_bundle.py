import json
from pathlib import Path

import numpy as np
import pytest

from pivh_live.bundle import (
    CARD_FILE,
    ONNX_FILE,
    SCHEMA,
    SCHEMA_OFFSETS,
    TORCH_FILE,
    load_bundle,
    make_card,
    read_card,
    set_grade_logit_offsets,
    sha256_file,
    update_card_metrics,
    write_json_atomic,
)
from pivh_live.errors import ModelBundleError

onnx = pytest.importorskip("onnx", reason="onnx is in the train extra")
from onnx import TensorProto, helper  # noqa: E402

SIZE = 64
HEATMAP = 8


def tiny_onnx(path: Path, size: int = SIZE, heatmap: int = HEATMAP, grade_name="grade_logits"):
    """A small hand-built graph with the bundle's I/O: pools the image into the three outputs."""
    k = size // heatmap
    rng = np.random.default_rng(0)
    wg = helper.make_tensor("wg", TensorProto.FLOAT, [1, 5], rng.normal(size=5).tolist())
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "wg"], [grade_name]),
        helper.make_node("Identity", ["flat"], ["valid_logit"]),
        helper.make_node(
            "AveragePool", ["image"], ["heatmap_logits"], kernel_shape=[k, k], strides=[k, k]
        ),
    ]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", f, ["N", 1, size, size])],
        [
            helper.make_tensor_value_info(grade_name, f, ["N", 5]),
            helper.make_tensor_value_info("valid_logit", f, ["N", 1]),
            helper.make_tensor_value_info("heatmap_logits", f, ["N", 1, heatmap, heatmap]),
        ],
        initializer=[wg],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))


def tiny_card(onnx_sha256: str, size: int = SIZE, heatmap: int = HEATMAP, **extra) -> dict:
    return make_card(
        name="tiny",
        version="0.0.1",
        created="2025-01-01T00:00:00+00:00",
        input_size=size,
        heatmap_size=heatmap,
        thresholds={"pivh": 0.4, "severe": 0.3, "valid": 0.5},
        metrics={"validation": {"auc": 0.9}},
        dataset={"dataset": {"seed": 1}},
        sha256={ONNX_FILE: onnx_sha256},
        software={"pivh_live": "test"},
        **extra,
    )


def write_bundle(root: Path, size: int = SIZE, heatmap: int = HEATMAP) -> Path:
    root.mkdir(parents=True)
    tiny_onnx(root / ONNX_FILE, size, heatmap)
    card = tiny_card(sha256_file(root / ONNX_FILE), size, heatmap)
    write_json_atomic(root / CARD_FILE, card)
    return root


def rewrite_card(root: Path, **changes) -> None:
    card = json.loads((root / CARD_FILE).read_text())
    card.update(changes)
    (root / CARD_FILE).write_text(json.dumps(card))


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "tiny")


def test_load_valid_bundle(bundle_dir):
    b = load_bundle(bundle_dir)
    assert (b.name, b.version, b.input_size) == ("tiny", "0.0.1", SIZE)
    assert b.thresholds == {"pivh": 0.4, "severe": 0.3, "valid": 0.5}
    assert b.torch_path is None and b.onnx_path == bundle_dir / ONNX_FILE
    assert b.onnx_sha256 == sha256_file(bundle_dir / ONNX_FILE)
    assert b.output_shapes["heatmap_logits"] == [-1, 1, HEATMAP, HEATMAP]
    assert b.card["schema"] == SCHEMA
    assert "not for diagnosis" in b.card["intended_use"]
    assert b.card["references"][0]["doi"] == "10.1007/s00247-025-06327-x"


def test_missing_directory(tmp_path):
    with pytest.raises(ModelBundleError, match="not found; export one"):
        load_bundle(tmp_path / "nope")


def test_missing_card(bundle_dir):
    (bundle_dir / CARD_FILE).unlink()
    with pytest.raises(ModelBundleError, match=r"model\.json is missing"):
        load_bundle(bundle_dir)


def test_missing_onnx(bundle_dir):
    (bundle_dir / ONNX_FILE).unlink()
    with pytest.raises(ModelBundleError, match=r"model\.onnx is missing"):
        load_bundle(bundle_dir)


def test_malformed_json(bundle_dir):
    (bundle_dir / CARD_FILE).write_text('{"schema": "pivh-live-bundle/1",')
    with pytest.raises(ModelBundleError, match="not valid JSON"):
        load_bundle(bundle_dir)


def test_wrong_schema(bundle_dir):
    rewrite_card(bundle_dir, schema="pivh-live-bundle/0")
    with pytest.raises(ModelBundleError, match="has schema"):
        load_bundle(bundle_dir)


def test_missing_thresholds(bundle_dir):
    rewrite_card(bundle_dir, thresholds={"pivh": 0.5})
    with pytest.raises(ModelBundleError, match="thresholds"):
        load_bundle(bundle_dir)


def test_bad_hash(bundle_dir):
    with open(bundle_dir / ONNX_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelBundleError, match=r"model\.onnx hash does not match model\.json"):
        load_bundle(bundle_dir)


def test_unlisted_or_bad_torch_weights(bundle_dir):
    (bundle_dir / TORCH_FILE).write_bytes(b"weights")
    with pytest.raises(ModelBundleError, match="not listed"):
        load_bundle(bundle_dir)
    card = read_card(bundle_dir)
    rewrite_card(bundle_dir, sha256={**card["sha256"], TORCH_FILE: "0" * 64})
    with pytest.raises(ModelBundleError, match=r"model\.pt hash does not match"):
        load_bundle(bundle_dir)
    torch_hash = sha256_file(bundle_dir / TORCH_FILE)
    rewrite_card(bundle_dir, sha256={**card["sha256"], TORCH_FILE: torch_hash})
    assert load_bundle(bundle_dir).torch_path == bundle_dir / TORCH_FILE


def _swap_onnx(root: Path, **kwargs) -> None:
    tiny_onnx(root / ONNX_FILE, **kwargs)
    card = read_card(root)
    rewrite_card(root, sha256={**card["sha256"], ONNX_FILE: sha256_file(root / ONNX_FILE)})


def test_onnx_input_shape_differs_from_card(bundle_dir):
    _swap_onnx(bundle_dir, size=128, heatmap=HEATMAP)
    with pytest.raises(ModelBundleError, match=r"has inputs/outputs .*128.* but model\.json"):
        load_bundle(bundle_dir)


def test_onnx_output_name_differs_from_card(bundle_dir):
    _swap_onnx(bundle_dir, grade_name="grade")
    with pytest.raises(ModelBundleError, match="re-export the bundle"):
        load_bundle(bundle_dir)


def test_card_with_foreign_outputs(bundle_dir):
    card = read_card(bundle_dir)
    rewrite_card(bundle_dir, outputs=card["outputs"][:2])
    with pytest.raises(ModelBundleError, match="pivh-live needs"):
        load_bundle(bundle_dir)


def test_unloadable_onnx_with_matching_hash(bundle_dir):
    (bundle_dir / ONNX_FILE).write_bytes(b"not an onnx model")
    card = read_card(bundle_dir)
    onnx_hash = sha256_file(bundle_dir / ONNX_FILE)
    rewrite_card(bundle_dir, sha256={**card["sha256"], ONNX_FILE: onnx_hash})
    with pytest.raises(ModelBundleError, match="cannot be loaded by ONNX Runtime"):
        load_bundle(bundle_dir)


def test_update_card_metrics_merges_without_touching_weights(bundle_dir):
    before = (bundle_dir / ONNX_FILE).read_bytes()
    card = update_card_metrics(bundle_dir, {"test": {"auc": np.float32(0.75), "n": np.int64(3)}})
    assert card["metrics"]["validation"] == {"auc": 0.9}
    assert card["metrics"]["test"] == {"auc": pytest.approx(0.75), "n": 3}
    assert (bundle_dir / ONNX_FILE).read_bytes() == before
    assert load_bundle(bundle_dir).card["metrics"]["test"]["n"] == 3
    assert not [p for p in bundle_dir.iterdir() if p.name.endswith(".tmp")]


def test_update_card_metrics_rejects_unserialisable_and_keeps_card(bundle_dir):
    before = (bundle_dir / CARD_FILE).read_text()
    with pytest.raises(TypeError, match="not JSON serialisable"):
        update_card_metrics(bundle_dir, {"test": object()})
    assert (bundle_dir / CARD_FILE).read_text() == before


def test_card_with_off_contract_shapes(bundle_dir):
    card = read_card(bundle_dir)
    outputs = [dict(o) for o in card["outputs"]]
    outputs[0]["shape"] = [-1, 4]
    rewrite_card(bundle_dir, outputs=outputs)
    with pytest.raises(ModelBundleError, match=r"declares shapes .*\[-1, 4\]"):
        load_bundle(bundle_dir)
    outputs[0]["shape"] = [-1, 5]
    rewrite_card(bundle_dir, outputs=outputs, input={**card["input"], "shape": [-1, 1, 64, 32]})
    with pytest.raises(ModelBundleError, match="declares shapes"):
        load_bundle(bundle_dir)


def test_input_fit_defaults_to_letterbox_and_reads_stretch(bundle_dir):
    assert load_bundle(bundle_dir).fit == "letterbox"
    card = json.loads((bundle_dir / CARD_FILE).read_text())
    assert card["input"]["fit"] == "letterbox"
    del card["input"]["fit"]  # a card written before fits existed
    (bundle_dir / CARD_FILE).write_text(json.dumps(card))
    assert load_bundle(bundle_dir).fit == "letterbox"
    rewrite_card(bundle_dir, input={**card["input"], "fit": "stretch"})
    assert load_bundle(bundle_dir).fit == "stretch"


def test_unknown_input_fit_is_refused(bundle_dir):
    card = json.loads((bundle_dir / CARD_FILE).read_text())
    rewrite_card(bundle_dir, input={**card["input"], "fit": "crop"})
    with pytest.raises(ModelBundleError, match=r"fit 'crop'.*upgrade pivh-live or re-export"):
        load_bundle(bundle_dir)


def test_tta_defaults_to_none_and_unknown_is_refused(bundle_dir):
    assert load_bundle(bundle_dir).tta == "none"
    card = json.loads((bundle_dir / CARD_FILE).read_text())
    del card["input"]["tta"]  # a card written before TTA existed
    (bundle_dir / CARD_FILE).write_text(json.dumps(card))
    assert load_bundle(bundle_dir).tta == "none"
    rewrite_card(bundle_dir, input={**card["input"], "tta": "hflip"})
    assert load_bundle(bundle_dir).tta == "hflip"
    rewrite_card(bundle_dir, input={**card["input"], "tta": "rot90"})
    with pytest.raises(ModelBundleError, match=r"augmentation 'rot90'.*upgrade pivh-live"):
        load_bundle(bundle_dir)


def test_norm_defaults_to_none_and_unknown_is_refused(bundle_dir):
    assert load_bundle(bundle_dir).norm == "none"
    card = json.loads((bundle_dir / CARD_FILE).read_text())
    card["input"].pop("norm", None)  # a card written before norms existed (0.18.0)
    (bundle_dir / CARD_FILE).write_text(json.dumps(card))
    assert load_bundle(bundle_dir).norm == "none"
    rewrite_card(
        bundle_dir, schema="pivh-live-bundle/2", input={**card["input"], "norm": "percentile"}
    )
    assert load_bundle(bundle_dir).norm == "percentile"
    rewrite_card(bundle_dir, input={**card["input"], "norm": "zscore"})
    with pytest.raises(ModelBundleError, match=r"norm 'zscore'.*upgrade pivh-live or re-export"):
        load_bundle(bundle_dir)


def test_grade_logit_offsets_need_their_schema_and_five_finite_numbers(bundle_dir):
    assert load_bundle(bundle_dir).grade_logit_offsets is None
    card = json.loads((bundle_dir / CARD_FILE).read_text())
    set_grade_logit_offsets(card, [0.0, -0.5, -1.0, -1.5, -1.25])
    assert card["schema"] == SCHEMA_OFFSETS
    (bundle_dir / CARD_FILE).write_text(json.dumps(card))
    assert load_bundle(bundle_dir).grade_logit_offsets == (0.0, -0.5, -1.0, -1.5, -1.25)
    rewrite_card(bundle_dir, schema=SCHEMA)  # an older reader must not drop the correction
    with pytest.raises(ModelBundleError, match="offsets but schema"):
        load_bundle(bundle_dir)
    for bad in ([0.0, 1.0], [0.0, 1.0, 2.0, 3.0, float("nan")], [0, 1, 2, True, 4], "0 1 2 3 4"):
        card["outputs"][0]["logit_offsets"] = bad
        (bundle_dir / CARD_FILE).write_text(json.dumps(card))
        with pytest.raises(ModelBundleError, match="logit_offsets must be"):
            load_bundle(bundle_dir)


def test_make_card_with_offsets_says_so_in_schema_and_description():
    card = tiny_card("0" * 64, grade_logit_offsets=[0, -1, -1, -1, -1])
    assert card["schema"] == SCHEMA_OFFSETS
    assert card["outputs"][0]["logit_offsets"] == [0.0, -1.0, -1.0, -1.0, -1.0]
    assert "logit_offsets" in card["outputs"][0]["description"]
