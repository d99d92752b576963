"""A fitted HistGradientBoostingRegressor's trees as flat arrays, walked by one compiled (numba) kernel.

scikit-learn predicts tree by tree, with one Python call and one OpenMP parallel region per tree: for the
production model's 800 trees that is ~6 ms of overhead for a single trip, and its per-row walk is slow on a
1,000-trip batch. Here every tree's nodes are packed into five arrays once, at model load, and one compiled
call walks all trees for all rows, trees in the outer loop (a tree's nodes stay in cache while the rows pass).

The result is bit-for-bit scikit-learn's: the same comparison at every node (``x <= threshold`` goes left, a
NaN follows the node's ``missing_go_to_left``), and for each row the same sum in the same order (the baseline,
then tree 1, tree 2, ...). Models this does not cover (categorical splits, several trees per iteration, a
loss whose link is not the identity) are refused by :func:`pack_forest` with the reason.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from tripduration.runtime.threads import usable_cpus

#: below this many rows one thread walks them all (a second thread costs more than it saves)
ROWS_PER_THREAD = 256


class UnsupportedModelError(ValueError):
    """The model is not one the compiled path reproduces exactly (the caller uses ``model.predict``)."""


def _jit(function: Any) -> Any:
    """Compiled without the GIL, cached on disk beside this file (or in NUMBA_CACHE_DIR); where no cache folder
    is writable, compiled at first use in each process instead (about a second)."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)


def _walk_all(x, roots, feature, threshold, left, right, missing_left, value, base, out):
    n = x.shape[0]
    for r in range(n):
        out[r] = base
    for t in range(roots.shape[0]):
        root = roots[t]
        for r in range(n):
            node = root
            f = feature[node]
            while f >= 0:
                v = x[r, f]
                if v <= threshold[node]:
                    node = left[node]
                elif v != v:  # NaN: scikit-learn's missing-value direction
                    node = left[node] if missing_left[node] else right[node]
                else:
                    node = right[node]
                f = feature[node]
            out[r] += value[node]


_walk = _jit(_walk_all)


@dataclass(frozen=True)
class Forest:
    """All trees of one model: node ``i`` tests ``x[feature[i]] <= threshold[i]`` (``feature[i] == -1``: a leaf
    worth ``value[i]``); ``roots[t]`` is tree ``t``'s first node; a prediction is ``base`` + the leaves' sum."""

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    missing_left: np.ndarray
    value: np.ndarray
    base: float
    n_features: int

    def predict(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """Predictions for the rows of ``x`` (float64, one column per feature, in the model's order), on up to
        ``threads`` threads: the rows are cut into that many blocks, the calling thread walks the first and a
        pool the others (the kernel releases the GIL). More, smaller blocks were slower: each block reads all
        trees again (measured: 4 blocks per thread, 28 ms instead of 24 for 1,000 trips on 2 busy cores)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected a 2-D array of {self.n_features} feature columns, got shape {x.shape}")
        out = np.empty(x.shape[0], dtype=np.float64)
        threads = min(max(threads, 1), max(x.shape[0] // ROWS_PER_THREAD, 1))
        bounds = list(itertools.pairwise(np.linspace(0, x.shape[0], threads + 1).astype(int).tolist()))
        helpers = [_pool().submit(self._walk, x[lo:hi], out[lo:hi]) for lo, hi in bounds[1:]]
        lo, hi = bounds[0]
        self._walk(x[lo:hi], out[lo:hi])
        for helper in helpers:
            helper.result()
        return out

    def _walk(self, x: np.ndarray, out: np.ndarray) -> None:
        _walk(
            x, self.roots, self.feature, self.threshold, self.left, self.right, self.missing_left, self.value,
            self.base, out,
        )  # fmt: skip


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(usable_cpus() - 1, 1), thread_name_prefix="forest")
    return _POOL


def pack_forest(model: Any) -> Forest:
    """The trees of a fitted ``HistGradientBoostingRegressor`` as a :class:`Forest`; raises
    :class:`UnsupportedModelError` naming what is not covered."""
    name = type(model).__name__
    if name != "HistGradientBoostingRegressor" or not hasattr(model, "_predictors"):
        raise UnsupportedModelError(f"{name} is not a fitted HistGradientBoostingRegressor")
    if getattr(model, "loss", None) != "squared_error":
        raise UnsupportedModelError(f"loss {model.loss!r}: only 'squared_error' (identity link) is compiled")
    if model.n_trees_per_iteration_ != 1:
        raise UnsupportedModelError(f"{model.n_trees_per_iteration_} trees per iteration (only 1 is compiled)")
    if model.is_categorical_ is not None and np.any(model.is_categorical_):
        raise UnsupportedModelError("categorical features are not compiled")
    nodes = [iteration[0].nodes for iteration in model._predictors]
    if any(n["is_categorical"].any() for n in nodes):
        raise UnsupportedModelError("a tree has a categorical split")
    sizes = np.array([len(n) for n in nodes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    every = np.concatenate(nodes)
    shift = np.repeat(offsets, sizes)
    leaf = every["is_leaf"].astype(bool)
    return Forest(
        roots=offsets.astype(np.int32),
        feature=np.where(leaf, -1, every["feature_idx"]).astype(np.int32),
        threshold=every["num_threshold"].astype(np.float64),
        left=np.where(leaf, 0, every["left"] + shift).astype(np.int32),
        right=np.where(leaf, 0, every["right"] + shift).astype(np.int32),
        missing_left=every["missing_go_to_left"].astype(np.uint8),
        value=every["value"].astype(np.float64),
        base=float(np.asarray(model._baseline_prediction).ravel()[0]),
        n_features=int(model.n_features_in_),
    )
