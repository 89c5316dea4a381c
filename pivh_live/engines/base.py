"""The Engine interface and the registry that maps engine names to implementations.

An engine runs a bundle's model: ``infer`` takes the preprocessed batch and
returns the raw outputs by ONNX name; ``score_batch`` does preprocess ->
infer -> softmax / sigmoid and returns one ``Score`` per region. Backends
(onnxruntime, torch, tensorrt) are imported inside the implementations, so
the registry lists every engine on any machine and says why one is missing.
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import numpy as np

from pivh_live.bundle import ModelBundle, load_bundle
from pivh_live.errors import EngineError
from pivh_live.frames import Score
from pivh_live.preprocess import preprocess_batch

log = logging.getLogger(__name__)

DEFAULT_ENGINE = "onnxruntime"


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    # Written with exp(-|x|) so large logits of either sign do not overflow.
    e = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def scores_from_outputs(
    outputs: dict[str, np.ndarray], grade_logit_offsets: Sequence[float] | None = None
) -> list[Score]:
    """Raw model outputs for a batch -> one Score per item (probabilities, float32).

    ``grade_logit_offsets`` (the bundle's prior correction, if any) are added to
    the grade logits before the softmax.
    """
    logits = np.asarray(outputs["grade_logits"], dtype=np.float32)
    if grade_logit_offsets is not None:
        logits = logits + np.asarray(grade_logit_offsets, dtype=np.float32)
    grade = softmax(logits, axis=1)
    valid = sigmoid(np.asarray(outputs["valid_logit"], dtype=np.float32)).reshape(-1)
    heat = sigmoid(np.asarray(outputs["heatmap_logits"], dtype=np.float32))
    n = grade.shape[0]
    if valid.shape[0] != n or heat.shape[0] != n:
        raise EngineError(
            f"engine outputs disagree on batch size ({n}, {valid.shape[0]}, {heat.shape[0]}); "
            "re-export the bundle"
        )
    return [
        Score(
            grade_probs=grade[i].astype(np.float32),
            p_valid=float(valid[i]),
            heatmap=heat[i].reshape(heat.shape[-2:]).astype(np.float32),
        )
        for i in range(n)
    ]


def average_mirrored(plain: Sequence[Score], mirrored: Sequence[Score]) -> list[Score]:
    """Combine the scores of frames and of their horizontal mirrors (bundle tta "hflip").

    Grade and valid probabilities are averaged; the mirror's heatmap is
    flipped back so both maps cover the same side before averaging.
    """
    return [
        Score(
            grade_probs=((a.grade_probs + b.grade_probs) * 0.5).astype(np.float32),
            p_valid=0.5 * (a.p_valid + b.p_valid),
            heatmap=((a.heatmap + b.heatmap[:, ::-1]) * 0.5).astype(np.float32),
        )
        for a, b in zip(plain, mirrored, strict=True)
    ]


class Engine(ABC):
    """Runs one bundle's model. Use as a context manager or call ``close()``."""

    name: ClassVar[str] = ""
    #: Largest batch ``infer`` accepts (None: no limit); score_batch splits above it.
    max_batch: int | None = None

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this engine can run here, else why not and what to install."""
        return None

    @abstractmethod
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """float32 (N, 1, S, S) model input (preprocess_batch) -> raw outputs by ONNX name."""

    def score_batch(self, images: Sequence[np.ndarray]) -> list[Score]:
        """Gray uint8 regions -> one Score each (preprocess, infer, softmax/sigmoid)."""
        if len(images) == 0:
            return []
        batch = preprocess_batch(
            list(images), self.bundle.input_size, self.bundle.fit, self.bundle.norm
        )
        return self.score_preprocessed(batch)

    def score_preprocessed(self, batch: np.ndarray) -> list[Score]:
        """A preprocessed (N, 1, S, S) batch -> one Score each, with the bundle's TTA.

        Splits the batch to ``max_batch``; with "hflip" each chunk goes to
        ``infer`` together with its mirror image (one call of twice the
        size where the engine takes it).
        """
        n = batch.shape[0]
        if n == 0:
            return []
        hflip = self.bundle.tta == "hflip"
        offsets = self.bundle.grade_logit_offsets
        limit = self.max_batch or (2 * n if hflip else n)
        step = max(1, limit // 2) if hflip else limit
        scores: list[Score] = []
        for start in range(0, n, step):
            part = batch[start : start + step]
            if not hflip:
                scores.extend(scores_from_outputs(self.infer(part), offsets))
                continue
            mirror = part[..., ::-1]
            if 2 * len(part) <= limit:
                both = scores_from_outputs(self.infer(np.concatenate([part, mirror])), offsets)
                plain, mirrored = both[: len(part)], both[len(part) :]
            else:  # an engine that takes one frame at a time
                plain = scores_from_outputs(self.infer(part), offsets)
                mirrored = scores_from_outputs(self.infer(np.ascontiguousarray(mirror)), offsets)
            scores.extend(average_mirrored(plain, mirrored))
        return scores

    def score(self, image: np.ndarray) -> Score:
        return self.score_batch([image])[0]

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing to free
        """Free backend resources; the engine must not be used afterwards."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        size = self.bundle.input_size
        if batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != (1, size, size):
            raise EngineError(
                f"{self.name} engine needs a float32 (N, 1, {size}, {size}) batch, got "
                f"{batch.dtype} {batch.shape}; build it with pivh_live.preprocess.preprocess_batch"
            )
        if batch.shape[0] == 0 or (self.max_batch is not None and batch.shape[0] > self.max_batch):
            raise EngineError(
                f"{self.name} engine takes batches of 1..{self.max_batch or 'any'}, "
                f"got {batch.shape[0]}; split the batch"
            )
        return np.ascontiguousarray(batch)


_REGISTRY: dict[str, type[Engine]] = {}
E = TypeVar("E", bound=type[Engine])


def register_engine(name: str) -> Callable[[E], E]:
    """Class decorator: make an Engine subclass available as ``create_engine(name, ...)``."""

    def decorate(cls: E) -> E:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"engine name {name!r} is already registered by {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def engine_names() -> list[str]:
    return sorted(_REGISTRY)


def available_engines() -> dict[str, str | None]:
    """Every registered engine name -> None if it can run here, else the reason."""
    return {name: _REGISTRY[name].unavailable_reason() for name in engine_names()}


def create_engine(name: str, bundle: ModelBundle | str | Path, **options: Any) -> Engine:
    """Create the engine ``name`` for ``bundle`` (a ModelBundle or a bundle directory)."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise EngineError(f"unknown engine {name!r}; choose one of {', '.join(engine_names())}")
    reason = cls.unavailable_reason()
    if reason is not None:
        raise EngineError(f"engine {name!r} is unavailable: {reason}")
    params = inspect.signature(cls.__init__).parameters
    known = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise EngineError(
            f"engine {name!r} has no option(s) {unknown}; its options are {known or 'none'}"
        )
    if not isinstance(bundle, ModelBundle):
        bundle = load_bundle(bundle)
    log.info("creating %s engine for %s %s", name, bundle.name, bundle.version)
    return cls(bundle, **options)
