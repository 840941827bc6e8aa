"""Constant-velocity Kalman filter on boxes (cx, cy, w, h), vectorised over tracks.

State per track: mean (8,) = (cx, cy, w, h, vcx, vcy, vw, vh) and covariance (8, 8); a batch of T
tracks is ``mean`` (T, 8) and ``covariance`` (T, 8, 8), float64. Process and measurement noise
scale with the box size (BoT-SORT parameterisation), so the filter behaves the same at any resolution.
"""

from __future__ import annotations

import numpy as np

_STD_POSITION = 1.0 / 20
_STD_VELOCITY = 1.0 / 160
# Below this size (px) a predicted box is clamped, so a shrinking lost track never gets a negative size.
_MIN_SIZE = 1.0

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_F.setflags(write=False)


def xyxy_to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, dtype=np.float64)
    wh = xyxy[:, 2:4] - xyxy[:, 0:2]
    return np.concatenate([xyxy[:, 0:2] + wh / 2, wh], axis=1)


def cxcywh_to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = np.maximum(cxcywh[:, 2:4], _MIN_SIZE) / 2
    return np.concatenate([cxcywh[:, 0:2] - half, cxcywh[:, 0:2] + half], axis=1)


def _size_scale(mean: np.ndarray) -> np.ndarray:
    """(T, 4) per-component scale (w, h, w, h) from the current box size."""
    wh = np.maximum(mean[:, 2:4], _MIN_SIZE)
    return np.concatenate([wh, wh], axis=1)


def initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from (N, 4) cxcywh boxes: zero velocity, wide velocity uncertainty."""
    n = len(measurement)
    mean = np.zeros((n, 8))
    mean[:, :4] = measurement
    scale = _size_scale(mean)
    std = np.concatenate([2 * _STD_POSITION * scale, 10 * _STD_VELOCITY * scale], axis=1)
    covariance = np.zeros((n, 8, 8))
    covariance[:, np.arange(8), np.arange(8)] = std**2
    return mean, covariance


def predict(mean: np.ndarray, covariance: np.ndarray, steps: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Advance every track ``steps`` frames (each step adds its own process noise)."""
    for _ in range(steps):
        scale = _size_scale(mean)
        q = np.concatenate([_STD_POSITION * scale, _STD_VELOCITY * scale], axis=1) ** 2
        mean = mean @ _F.T
        covariance = _F @ covariance @ _F.T
        covariance[:, np.arange(8), np.arange(8)] += q
    return mean, covariance


def update(mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct (T, 8)/(T, 8, 8) with (T, 4) cxcywh measurements, one per track."""
    r = (_STD_POSITION * _size_scale(mean)) ** 2
    projected_cov = covariance[:, :4, :4].copy()
    projected_cov[:, np.arange(4), np.arange(4)] += r
    cov_h = covariance[:, :, :4]  # P H^T, (T, 8, 4)
    # K = P H^T S^-1, solved as S K^T = (P H^T)^T since S is symmetric.
    gain = np.linalg.solve(projected_cov, cov_h.transpose(0, 2, 1)).transpose(0, 2, 1)
    innovation = measurement - mean[:, :4]
    new_mean = mean + np.einsum("tij,tj->ti", gain, innovation)
    new_covariance = covariance - gain @ projected_cov @ gain.transpose(0, 2, 1)
    return new_mean, new_covariance
