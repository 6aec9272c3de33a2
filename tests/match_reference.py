"""Plain least-squares reference of the subspace-match algorithms (Wang et al. 2018).

Used by the tests and by bench/match.py as the independent route: every
relative distance is a least-squares solve on the raw activations (one
``numpy.linalg.lstsq`` per pruning step), exactly as the definitions read.
Comparisons use the same inclusive rule as deepspan, d <= eps + atol.
"""

from __future__ import annotations

import numpy as np

DEAD = 1e-16


def ls_distances(Z: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Relative distances of the columns of Z to span(columns of S), by least squares."""
    if Z.shape[1] == 0:
        return np.zeros(0)
    if S.shape[1] == 0:
        return np.ones(Z.shape[1])
    coef = np.linalg.lstsq(S, Z, rcond=None)[0]
    return np.linalg.norm(Z - S @ coef, axis=0) / np.linalg.norm(Z, axis=0)


def ls_max_match(A: np.ndarray, B: np.ndarray, eps: float, X=None, Y=None, atol: float = 1e-6):
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    X = np.arange(A.shape[1]) if X is None else np.asarray(X, dtype=np.int64)
    Y = np.arange(B.shape[1]) if Y is None else np.asarray(Y, dtype=np.int64)
    X = X[np.linalg.norm(A[:, X], axis=0) > DEAD]
    Y = Y[np.linalg.norm(B[:, Y], axis=0) > DEAD]
    while True:
        X2 = X[ls_distances(A[:, X], B[:, Y]) <= eps + atol]
        Y2 = Y[ls_distances(B[:, Y], A[:, X2]) <= eps + atol]
        if len(X2) == len(X) and len(Y2) == len(Y):
            return np.sort(X2), np.sort(Y2)
        X, Y = X2, Y2


def ls_is_match(A, B, X, Y, eps, atol: float = 1e-6) -> bool:
    X, Y = np.asarray(X, dtype=np.int64), np.asarray(Y, dtype=np.int64)
    if (np.linalg.norm(A[:, X], axis=0) <= DEAD).any() or (np.linalg.norm(B[:, Y], axis=0) <= DEAD).any():
        return False
    return bool(np.all(ls_distances(A[:, X], B[:, Y]) <= eps + atol) and np.all(ls_distances(B[:, Y], A[:, X]) <= eps + atol))


def ls_minimal_match(A, B, side: str, index: int, eps: float, atol: float = 1e-6):
    """v-minimal match with order='index' (the issue's algorithm), least-squares route."""
    X, Y = ls_max_match(A, B, eps, atol=atol)
    if (side == "a" and index not in X) or (side == "b" and index not in Y):
        return None
    cur = {"a": list(X), "b": list(Y)}
    unchecked = {"a": [int(i) for i in X if not (side == "a" and i == index)],
                 "b": [int(i) for i in Y if not (side == "b" and i == index)]}
    while unchecked["a"] or unchecked["b"]:
        s = "a" if unchecked["a"] else "b"
        u = unchecked[s].pop(0)
        reduced = [w for w in cur[s] if w != u]
        Xr, Yr = (reduced, cur["b"]) if s == "a" else (cur["a"], reduced)
        Xm, Ym = ls_max_match(A, B, eps, Xr, Yr, atol=atol)
        if (side == "a" and index in Xm) or (side == "b" and index in Ym):
            cur[s] = reduced
    return np.sort(np.array(cur["a"], dtype=np.int64)), np.sort(np.array(cur["b"], dtype=np.int64))
