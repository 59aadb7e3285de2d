"""Ranking / regression metrics for performance predictors."""

from __future__ import annotations

import numpy as np


def _clean(pred, true):
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {true.shape}")
    ok = np.isfinite(pred) & np.isfinite(true)
    return pred[ok], true[ok]


def srcc(pred, true) -> float:
    """Spearman rank correlation of two float ``(N,)`` arrays (non-finite pairs dropped)."""
    from scipy.stats import spearmanr

    p, t = _clean(pred, true)
    return float(spearmanr(p, t)[0]) if len(p) > 2 else float("nan")


def kendall(pred, true) -> float:
    """Kendall tau-b of two float ``(N,)`` arrays."""
    from scipy.stats import kendalltau

    p, t = _clean(pred, true)
    return float(kendalltau(p, t)[0]) if len(p) > 2 else float("nan")


def ndcg_at_k(pred, true, k: int = 10) -> float:
    """NDCG@k: rank by ``pred``; the gain of an architecture is its true accuracy min-max scaled to
    [0, 1] within the evaluated set; discount ``1 / log2(rank + 1)``; normalised by the ideal order."""
    p, t = _clean(pred, true)
    if len(p) == 0:
        return float("nan")
    gain = (t - t.min()) / max(t.max() - t.min(), 1e-12)
    disc = 1.0 / np.log2(np.arange(2, min(k, len(p)) + 2))
    dcg = (gain[np.argsort(-p, kind="stable")[:k]] * disc).sum()
    idcg = (np.sort(gain)[::-1][:k] * disc).sum()
    return float(dcg / idcg) if idcg > 0 else float("nan")


def mae(pred, true) -> float:
    """Mean absolute error (same units as the inputs, e.g. accuracy points)."""
    p, t = _clean(pred, true)
    return float(np.abs(p - t).mean()) if len(p) else float("nan")


def all_metrics(pred, true, with_mae: bool = True) -> dict:
    """``{'srcc', 'kendall', 'ndcg10', 'mae', 'n'}`` (mae omitted for scores that are not accuracies)."""
    out = {"srcc": srcc(pred, true), "kendall": kendall(pred, true), "ndcg10": ndcg_at_k(pred, true, 10)}
    if with_mae:
        out["mae"] = mae(pred, true)
    out["n"] = int(np.sum(np.isfinite(np.asarray(pred, float)) & np.isfinite(np.asarray(true, float))))
    return out
