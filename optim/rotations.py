"""Rotation helpers for the fit: axis-angle and 6D parametrisations, Kabsch, the cube group, angles."""

from __future__ import annotations

import itertools

import numpy as np
import torch


def axis_angle_to_matrix(omega: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula for one axis-angle vector ``[3]`` (smooth at zero)."""
    theta2 = (omega * omega).sum()
    theta = torch.sqrt(theta2 + 1e-12)
    k = omega / theta
    K = torch.zeros(3, 3, dtype=omega.dtype)
    K = K.index_put((torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1, 2, 0, 2, 0, 1])),
                    torch.stack([-k[2], k[1], k[2], -k[0], -k[1], k[0]]))
    eye = torch.eye(3, dtype=omega.dtype)
    return eye + torch.sin(theta) * K + (1 - torch.cos(theta)) * (K @ K)


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """Zhou et al.'s continuous 6D representation (two columns, Gram–Schmidt) → rotation matrix."""
    a1, a2 = rot6d[:3], rot6d[3:]
    b1 = a1 / a1.norm().clamp(min=1e-8)
    b2 = a2 - (b1 * a2).sum() * b1
    b2 = b2 / b2.norm().clamp(min=1e-8)
    b3 = torch.cross(b1, b2, dim=0)
    return torch.stack([b1, b2, b3], dim=1)


def matrix_to_rot6d(R: np.ndarray) -> np.ndarray:
    return np.concatenate([R[:, 0], R[:, 1]])


def angle_deg(R1: np.ndarray, R2: np.ndarray) -> float:
    """Geodesic angle between two rotations, in degrees."""
    cos = (np.trace(np.asarray(R1).T @ np.asarray(R2)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def kabsch(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(R, t)`` minimising ``sum w ||R s + t - q||²`` (proper rotation, no reflection)."""
    w = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / max(w.sum(), 1e-12)
    mu_s, mu_t = w @ source, w @ target
    cov = ((source - mu_s) * w[:, None]).T @ (target - mu_t)
    U, _, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
    R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
    return R, mu_t - R @ mu_s


def cube_rotations() -> list[np.ndarray]:
    """The 24 rotations mapping the coordinate axes onto themselves (signed permutation matrices, det +1)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            R = np.zeros((3, 3))
            R[np.arange(3), perm] = signs
            if np.linalg.det(R) > 0:
                out.append(R)
    return out


def rotation_about(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(degrees)
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K
