"""Probe motion: sweep angle per frame, jitter, frozen and probe-lifted runs.

Angles are the plane tilt from the fontanelle: coronal = tilt towards the
back of the head (negative = frontal), sagittal = tilt towards the patient's
left (negative = right). The sweep bounces between limits chosen around a
target point (a lesion, or a place a lesion could be in normal heads) so
positive clips pass through their lesion and normal clips sweep alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LIMITS = {"coronal": (-35.0, 42.0), "sagittal": (-45.0, 45.0)}


@dataclass(frozen=True)
class Motion:
    angle: np.ndarray  # (T,) degrees
    offset: np.ndarray  # (T, 3) probe position on the fontanelle, mm
    roll: np.ndarray  # (T,) in-plane rotation, degrees
    twist: np.ndarray  # (T,) rotation about the sector axis, degrees
    gain_db: np.ndarray  # (T,)
    valid: np.ndarray  # (T,) bool, False = probe lifted / off the head
    frozen: np.ndarray  # (T,) bool, repeat the previous frame exactly


def _smooth_walk(rng: np.random.Generator, n: int, scale: float, length: int) -> np.ndarray:
    w = rng.standard_normal(n + 2 * length)
    k = np.hanning(2 * length + 1)
    out = np.convolve(w, k / np.sqrt(np.sum(k**2)), mode="same")[length : length + n]
    return (out * scale).astype(np.float32)


def target_angle(view: str, target: np.ndarray) -> float:
    lateral = target[1] if view == "coronal" else target[0]
    return float(np.degrees(np.arctan2(lateral, max(float(target[2]), 1.0))))


def plan_motion(
    rng: np.random.Generator, view: str, target: np.ndarray, n: int, fps: float, style_p: tuple
) -> Motion:
    """Sample one clip's probe motion.

    ``style_p`` = (p_freeze, p_lift, p_off_start, p_off_end, gain drift dB).
    """
    p_freeze, p_lift, p_start, p_end, drift = style_p
    lo_lim, hi_lim = LIMITS[view]
    centre = np.clip(target_angle(view, target) + rng.uniform(-4.0, 4.0), lo_lim + 5, hi_lim - 5)
    half = rng.uniform(10.0, 22.0) if view == "coronal" else rng.uniform(8.0, 18.0)
    lo, hi = max(centre - half, lo_lim), min(centre + half, hi_lim)
    speed = rng.uniform(10.0, 20.0) / fps
    pace = np.clip(1.0 + _smooth_walk(rng, n, 0.35, max(int(fps), 2)), 0.25, 1.8)
    a = rng.uniform(lo, hi)
    direction = rng.choice([-1.0, 1.0])
    angle = np.empty(n, dtype=np.float32)
    for t in range(n):
        angle[t] = a
        a += direction * speed * pace[t]
        if a > hi or a < lo:
            direction = -direction
            a = float(np.clip(a, lo, hi))
    k = max(int(fps * 0.25), 1)
    padded = np.concatenate([np.full(k, angle[0]), angle, np.full(k, angle[-1])])
    angle = np.convolve(padded, np.ones(2 * k + 1) / (2 * k + 1), mode="same")[k:-k]
    angle = angle + _smooth_walk(rng, n, 0.25, 3)
    offset = np.stack([_smooth_walk(rng, n, s, int(fps)) for s in (0.8, 0.8, 0.2)], axis=1)
    offset += rng.normal(0.0, 1.0, 3) * np.array([1.0, 1.5, 0.2])
    roll = _smooth_walk(rng, n, 1.0, int(fps)) + rng.normal(0.0, 2.5)
    twist = _smooth_walk(rng, n, 1.0, int(fps)) + rng.normal(0.0, 3.0)
    gain = _smooth_walk(rng, n, drift, int(2 * fps))

    valid = np.ones(n, dtype=bool)
    if rng.random() < p_start:
        valid[: int(rng.integers(3, max(4, n // 6)))] = False
    if rng.random() < p_end:
        valid[n - int(rng.integers(3, max(4, n // 6))) :] = False
    if rng.random() < p_lift and n > 20:
        s = int(rng.integers(n // 5, 4 * n // 5))
        valid[s : s + int(rng.integers(3, 12))] = False
    frozen = np.zeros(n, dtype=bool)
    for _ in range(rng.poisson(p_freeze * n / fps)):
        s = int(rng.integers(1, max(n - 1, 2)))
        frozen[s : s + int(rng.integers(2, 7))] = True
    frozen[0] = False
    return Motion(
        angle.astype(np.float32), offset.astype(np.float32), roll, twist, gain, valid, frozen
    )


def _rotate(v: np.ndarray, axis: np.ndarray, deg: float) -> np.ndarray:
    """Rodrigues rotation of v about the unit axis."""
    th = np.deg2rad(deg)
    return (
        v * np.cos(th) + np.cross(axis, v) * np.sin(th) + axis * float(axis @ v) * (1 - np.cos(th))
    )


def plane(view: str, angle: float, roll: float, twist: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit sector axis and image-right direction for a plane at ``angle`` degrees.

    Coronal: image right = patient's left (+x), as displayed clinically.
    Sagittal: image right = back of the head (+y), anterior on the left.
    """
    th = np.deg2rad(angle)
    if view == "coronal":
        axis = np.array([0.0, np.sin(th), np.cos(th)])
        lateral = np.array([1.0, 0.0, 0.0])
    else:
        axis = np.array([np.sin(th), 0.0, np.cos(th)])
        lateral = np.array([0.0, 1.0, 0.0])
    normal = np.cross(axis, lateral)
    axis, lateral = _rotate(axis, normal, roll), _rotate(lateral, normal, roll)
    lateral = _rotate(lateral, axis, twist)
    return axis.astype(np.float32), lateral.astype(np.float32)
