"""Model bundles: ``models/<name>/`` with model.onnx, model.json (the card), optional model.pt.

Layout and card fields are described in docs/model_bundle.md. ``load_bundle``
verifies everything it can before an engine runs the model: the card's
schema and fields, the SHA-256 of each weight file, and that the ONNX graph's
input and output names and shapes match the card.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivh_live.errors import ModelBundleError
from pivh_live.frames import N_GRADES
from pivh_live.preprocess import FITS, NORM_MIN_SPAN, NORM_TARGET, NORMS

log = logging.getLogger(__name__)

SCHEMA = "pivh-live-bundle/1"
# A card whose input norm is not "none" says /2, so a pivh-live from before norms
# refuses it instead of feeding the model pictures divided by 255.
SCHEMA_NORM = "pivh-live-bundle/2"
# A card with grade logit offsets (a prior correction) says /3, so a pivh-live from
# before offsets refuses it instead of showing uncorrected grades against its thresholds.
SCHEMA_OFFSETS = "pivh-live-bundle/3"
SCHEMAS: tuple[str, ...] = (SCHEMA, SCHEMA_NORM, SCHEMA_OFFSETS)
ONNX_FILE = "model.onnx"
CARD_FILE = "model.json"
TORCH_FILE = "model.pt"
INPUT_NAME = "image"
OUTPUT_NAMES: tuple[str, ...] = ("grade_logits", "valid_logit", "heatmap_logits")
GRADE_LABELS: tuple[str, ...] = ("0", "I", "II", "III", "IV")
THRESHOLD_KEYS: tuple[str, ...] = ("pivh", "severe", "valid")
INTENDED_USE = "Research use only - not for diagnosis or clinical decisions."
TRAINING_DATA = "Synthetic phantom only (pivh-live phantom); no patient data."
CROP = "ultrasound image region only (scanner UI and identifiers removed)"
PREPROCESSING = {
    "letterbox": (
        "gray uint8 region -> pad to a centred square with zeros -> area resize to "
        "{size}x{size} -> divide by 255 (pivh_live.preprocess.preprocess, fit letterbox)"
    ),
    "stretch": (
        "gray uint8 region -> area resize to {size}x{size}, height and width scaled "
        "separately (no padding) -> divide by 255 (pivh_live.preprocess.preprocess, fit stretch)"
    ),
}
#: Test-time augmentation an engine applies (docs/model_bundle.md): "none", or "hflip" = score
#: each frame and its mirror image in one batch and average the probabilities.
TTAS: tuple[str, ...] = ("none", "hflip")
TTA_DESCRIPTION = {
    "none": "one forward pass per frame",
    "hflip": (
        "each preprocessed frame and its horizontal mirror in one batch; grade and valid "
        "probabilities averaged, the mirror's heatmap flipped back and averaged"
    ),
}
REFERENCES: tuple[dict[str, str], ...] = (
    {
        "citation": (
            "Peng et al. Development and validation of a cranial ultrasound imaging-based "
            "deep learning model for periventricular-intraventricular haemorrhage detection "
            "and grading: a two-centre study. Pediatr Radiol 2025."
        ),
        "doi": "10.1007/s00247-025-06327-x",
    },
)
DEFAULT_MODEL = "pivh-phantom"
MODEL_ENV = "PIVH_LIVE_MODEL"
_HASH_CHUNK = 1 << 20
_REEXPORT = "re-export the bundle with `pivh-live export`"


@dataclass(frozen=True)
class ModelBundle:
    """A verified bundle. ``thresholds`` holds the operating points "pivh", "severe", "valid"."""

    path: Path
    card: dict[str, Any]
    onnx_path: Path
    torch_path: Path | None
    name: str
    version: str
    input_size: int
    thresholds: dict[str, float]
    fit: str = "letterbox"  # how a region fills the square input (pivh_live.preprocess.FITS)
    tta: str = "none"  # test-time augmentation every engine applies (TTAS)
    norm: str = "none"  # how gray levels become input values (pivh_live.preprocess.NORMS)
    #: added to grade_logits before the softmax by every engine (a prior correction), or None
    grade_logit_offsets: tuple[float, ...] | None = None

    @property
    def onnx_sha256(self) -> str:
        return str(self.card["sha256"][ONNX_FILE])

    @property
    def output_shapes(self) -> dict[str, list[int]]:
        return {o["name"]: list(o["shape"]) for o in self.card["outputs"]}


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def value_range(norm: str) -> list[float]:
    """The model input's value range under ``norm`` (pivh_live.preprocess.NORMS)."""
    if norm == "none":
        return [0.0, 1.0]
    return [0.0, round(NORM_TARGET * 255.0 / NORM_MIN_SPAN, 4)]


def preprocessing_text(fit: str, norm: str, size: int) -> str:
    """The card's one-line preprocessing recipe for ``fit`` and ``norm``."""
    text = PREPROCESSING[fit].format(size=size)
    if norm == "none":
        return text
    return text.replace("divide by 255", f"{NORMS[norm]}, norm {norm}")


def make_card(
    *,
    name: str,
    version: str,
    created: str,
    input_size: int,
    heatmap_size: int,
    thresholds: Mapping[str, float],
    fit: str = "letterbox",
    tta: str = "none",
    norm: str = "none",
    metrics: Mapping[str, Any],
    dataset: Mapping[str, Any],
    sha256: Mapping[str, str],
    software: Mapping[str, str],
    model_config: Mapping[str, Any] | None = None,
    export: Mapping[str, Any] | None = None,
    grade_logit_offsets: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The model.json card (MONAI-bundle style) for a PivhNet export."""
    card = {
        "schema": card_schema(norm, grade_logit_offsets),
        "name": name,
        "version": version,
        "created": created,
        "intended_use": INTENDED_USE,
        "training_data": {"description": TRAINING_DATA, **dict(dataset)},
        "input": {
            "name": INPUT_NAME,
            "shape": [-1, 1, input_size, input_size],
            "dtype": "float32",
            "value_range": value_range(norm),
            "fit": fit,
            "norm": norm,
            "preprocessing": preprocessing_text(fit, norm, input_size),
            "crop": CROP,
            "tta": tta,
            "tta_description": TTA_DESCRIPTION[tta],
        },
        "outputs": [
            {
                "name": "grade_logits",
                "shape": [-1, len(GRADE_LABELS)],
                "dtype": "float32",
                "description": "Papile grade visible in the frame; softmax gives probabilities",
                "labels": list(GRADE_LABELS),
            },
            {
                "name": "valid_logit",
                "shape": [-1, 1],
                "dtype": "float32",
                "description": "the frame shows a brain; sigmoid gives the probability",
            },
            {
                "name": "heatmap_logits",
                "shape": [-1, 1, heatmap_size, heatmap_size],
                "dtype": "float32",
                "description": (
                    "haemorrhage localisation over the fitted input; sigmoid gives "
                    "per-cell probability (map back with preprocess.heatmap_to_region)"
                ),
            },
        ],
        "thresholds": {k: float(thresholds[k]) for k in THRESHOLD_KEYS},
        "metrics": dict(metrics),
        "sha256": dict(sha256),
        "software": dict(software),
        "model_config": dict(model_config or {}),
        "export": dict(export or {}),
        "references": [dict(r) for r in REFERENCES],
    }
    if grade_logit_offsets is not None:
        set_grade_logit_offsets(card, grade_logit_offsets)
    return card


def card_schema(norm: str, grade_logit_offsets: Sequence[float] | None) -> str:
    """The oldest schema that can carry these settings (older readers refuse what they lack)."""
    if grade_logit_offsets is not None:
        return SCHEMA_OFFSETS
    return SCHEMA if norm == "none" else SCHEMA_NORM


def set_grade_logit_offsets(card: dict[str, Any], offsets: Sequence[float]) -> None:
    """Write prior-correction offsets into a card's grade_logits output (and bump its schema)."""
    values = check_logit_offsets(list(offsets))
    assert values is not None
    grade = next(o for o in card["outputs"] if o.get("name") == "grade_logits")
    grade["logit_offsets"] = list(values)
    grade["description"] = (
        "Papile grade visible in the frame; softmax(grade_logits + logit_offsets) gives "
        "probabilities (logit_offsets: a prior correction, docs/model_bundle.md)"
    )
    card["schema"] = SCHEMA_OFFSETS


def check_logit_offsets(offsets: Any) -> tuple[float, ...] | None:
    """A card's grade logit offsets as a tuple, None when absent; ValueError when malformed."""
    if offsets is None:
        return None
    if not isinstance(offsets, (list, tuple)) or len(offsets) != N_GRADES:
        raise ValueError(f"must be a list of {N_GRADES} numbers")
    values = []
    for v in offsets:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"must be {N_GRADES} finite numbers")
        values.append(float(v))
    return tuple(values)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON via a temporary file in the same directory and os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _to_plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"metric value of type {type(value).__name__} is not JSON serialisable")


def read_card(path: str | Path) -> dict[str, Any]:
    """Read and check the card of the bundle directory ``path`` (no hashing)."""
    root = Path(path)
    if not root.is_dir():
        raise ModelBundleError(
            f"model bundle {root} not found; "
            f"export one with `pivh-live export --checkpoint CKPT --out {root}`"
        )
    card_path = root / CARD_FILE
    if not card_path.is_file():
        raise ModelBundleError(f"{card_path} is missing; {_REEXPORT}")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelBundleError(f"{card_path} is not valid JSON ({e}); re-export the bundle") from e
    if not isinstance(card, dict):
        raise ModelBundleError(f"{card_path} must hold a JSON object; re-export the bundle")
    _check_card(card, card_path)
    return card


def _check_card(card: dict[str, Any], card_path: Path) -> None:
    if card.get("schema") not in SCHEMAS:
        raise ModelBundleError(
            f"{card_path} has schema {card.get('schema')!r}, this pivh-live reads "
            f"{' or '.join(map(repr, SCHEMAS))}; re-export the bundle with this version"
        )
    problems: list[str] = []
    for key, kind in (("name", str), ("version", str), ("input", dict), ("outputs", list)):
        if not isinstance(card.get(key), kind):
            problems.append(f"'{key}' ({kind.__name__})")
    if not isinstance(card.get("sha256"), dict) or ONNX_FILE not in card.get("sha256", {}):
        problems.append(f"'sha256' with '{ONNX_FILE}'")
    thresholds = card.get("thresholds")
    if not isinstance(thresholds, dict) or not all(
        isinstance(thresholds.get(k), (int, float)) for k in THRESHOLD_KEYS
    ):
        problems.append(f"'thresholds' with numbers {list(THRESHOLD_KEYS)}")
    if problems:
        raise ModelBundleError(
            f"{card_path} lacks or mistypes {', '.join(problems)}; re-export the bundle"
        )
    expected_in = card["input"].get("name") == INPUT_NAME
    names = [o.get("name") for o in card["outputs"] if isinstance(o, dict)]
    if not expected_in or names != list(OUTPUT_NAMES):
        raise ModelBundleError(
            f"{card_path} declares input {card['input'].get('name')!r} and outputs {names}; "
            f"pivh-live needs {INPUT_NAME!r} and {list(OUTPUT_NAMES)} - re-export the bundle"
        )
    fit = card["input"].get("fit", "letterbox")
    if fit not in FITS:
        raise ModelBundleError(
            f"{card_path} declares input fit {fit!r}; this pivh-live knows {list(FITS)} - "
            "upgrade pivh-live or re-export the bundle"
        )
    norm = card["input"].get("norm", "none")
    if norm not in NORMS:
        raise ModelBundleError(
            f"{card_path} declares input norm {norm!r}; this pivh-live knows {list(NORMS)} - "
            "upgrade pivh-live or re-export the bundle"
        )
    tta = card["input"].get("tta", "none")
    if tta not in TTAS:
        raise ModelBundleError(
            f"{card_path} declares test-time augmentation {tta!r}; this pivh-live knows "
            f"{list(TTAS)} - upgrade pivh-live or re-export the bundle"
        )
    grade_out = card["outputs"][0]
    try:
        offsets = check_logit_offsets(grade_out.get("logit_offsets"))
    except ValueError as e:
        raise ModelBundleError(
            f"{card_path}: grade_logits logit_offsets {e}; re-export or recalibrate the bundle"
        ) from e
    if offsets is not None and card.get("schema") != SCHEMA_OFFSETS:
        raise ModelBundleError(
            f"{card_path} has grade logit offsets but schema {card.get('schema')!r}, not "
            f"{SCHEMA_OFFSETS!r}; the card was edited by hand - recalibrate the bundle"
        )
    shapes = [card["input"].get("shape")] + [o.get("shape") for o in card["outputs"]]
    if not _contract_shapes(shapes):
        raise ModelBundleError(
            f"{card_path} declares shapes {shapes}, not [-1, 1, S, S], [-1, 5], [-1, 1], "
            "[-1, 1, H, H]; re-export the bundle"
        )


def _contract_shapes(shapes: list[Any]) -> bool:
    """Input [-1, 1, S, S]; outputs [-1, 5], [-1, 1], [-1, 1, H, H] (S, H positive)."""
    if not all(isinstance(s, list) and all(type(d) is int for d in s) for s in shapes):
        return False
    image, grade, valid, heat = shapes
    square = all(len(s) == 4 and s[:2] == [-1, 1] and s[2] == s[3] > 0 for s in (image, heat))
    return square and grade == [-1, len(GRADE_LABELS)] and valid == [-1, 1]


def _check_hash(root: Path, file: str, expected: str) -> None:
    actual = sha256_file(root / file)
    if actual != expected:
        raise ModelBundleError(
            f"{file} hash does not match {CARD_FILE}; the bundle is corrupt or was edited - "
            f"re-export it ({root})"
        )


def _onnx_dims(shape: list[Any]) -> list[int]:
    # ONNX Runtime reports symbolic dims as strings (or None); the card writes them as -1.
    return [d if isinstance(d, int) else -1 for d in shape]


def _check_onnx_io(card: dict[str, Any], onnx_path: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Only the graph's signature is needed here, so skip optimisation work.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises several unrelated types here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelBundleError(
            f"{onnx_path} cannot be loaded by ONNX Runtime ({first}); re-export the bundle"
        ) from e
    declared = [(card["input"]["name"], card["input"]["shape"])]
    declared += [(o["name"], o["shape"]) for o in card["outputs"]]
    actual = [(i.name, _onnx_dims(i.shape)) for i in session.get_inputs()]
    actual += [(o.name, _onnx_dims(o.shape)) for o in session.get_outputs()]
    if actual != declared:
        raise ModelBundleError(
            f"{onnx_path} has inputs/outputs {actual} but {CARD_FILE} declares {declared}; "
            "re-export the bundle"
        )


def default_bundle_path() -> Path:
    """The bundle used when none is named: $PIVH_LIVE_MODEL, else the shipped models/pivh-phantom.

    The shipped bundle lives in the source tree's ``models/`` (an editable or
    source install); a wheel install must name a bundle or set the variable.
    """
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    shipped = Path(__file__).resolve().parent.parent / "models" / DEFAULT_MODEL
    if not shipped.is_dir():
        raise ModelBundleError(
            f"no model bundle given and the shipped one ({shipped}) is not here; "
            f"pass --model DIR or set {MODEL_ENV}"
        )
    return shipped


def load_bundle(path: str | Path) -> ModelBundle:
    """Load and verify a bundle directory; raises ModelBundleError saying what to do."""
    root = Path(path)
    card = read_card(root)
    onnx_path = root / ONNX_FILE
    if not onnx_path.is_file():
        raise ModelBundleError(f"{onnx_path} is missing; {_REEXPORT}")
    _check_hash(root, ONNX_FILE, card["sha256"][ONNX_FILE])
    torch_path: Path | None = None
    if (root / TORCH_FILE).is_file():
        if TORCH_FILE not in card["sha256"]:
            raise ModelBundleError(
                f"{root / TORCH_FILE} is not listed in {CARD_FILE} sha256; "
                "remove it or re-export the bundle"
            )
        _check_hash(root, TORCH_FILE, card["sha256"][TORCH_FILE])
        torch_path = root / TORCH_FILE
    elif TORCH_FILE in card["sha256"]:
        # Deployment copies may leave the torch weights out on purpose.
        log.info("%s has no %s; the torch engine is unavailable for it", root, TORCH_FILE)
    _check_onnx_io(card, onnx_path)
    return ModelBundle(
        path=root,
        card=card,
        onnx_path=onnx_path,
        torch_path=torch_path,
        name=card["name"],
        version=card["version"],
        input_size=int(card["input"]["shape"][2]),
        thresholds={k: float(card["thresholds"][k]) for k in THRESHOLD_KEYS},
        fit=str(card["input"].get("fit", "letterbox")),
        tta=str(card["input"].get("tta", "none")),
        norm=str(card["input"].get("norm", "none")),
        grade_logit_offsets=check_logit_offsets(card["outputs"][0].get("logit_offsets")),
    )


def update_card_metrics(bundle_path: str | Path, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``metrics`` into the card's "metrics" (top-level keys replaced), atomically.

    model.onnx and model.pt are not touched, so their hashes stay valid.
    Returns the new card.
    """
    root = Path(bundle_path)
    card = read_card(root)
    merged = dict(card.get("metrics") or {})
    # Round-trip through JSON so numpy scalars/arrays become plain values and
    # anything unserialisable fails before the card is rewritten.
    merged.update(json.loads(json.dumps(dict(metrics), default=_to_plain)))
    card["metrics"] = merged
    write_json_atomic(root / CARD_FILE, card)
    return card
