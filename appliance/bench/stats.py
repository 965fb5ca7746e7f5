"""Percentile summaries shared by every benchmark."""

from __future__ import annotations

import numpy as np


def summarize(values, scale: float = 1.0) -> dict[str, float]:
    """p50/p95/p99/max/mean of ``values`` times ``scale``, or zeros for no samples."""
    a = np.asarray(values, dtype=np.float64) * scale
    if a.size == 0:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(a.max()), "mean": float(a.mean())}


def table(rows: list[tuple[str, str]]) -> str:
    """Two aligned columns, as every `appliancectl bench` prints its figures."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
