"""Two-stage scoring for the benchmark: embedding candidates, then audio verification.

The ISC21 matching track's winners went from µAP 0.64 (descriptors alone) to 0.83 with
pairwise verification (Douze et al. 2021). Here each query's ``top_k`` references by the
encoder's score are re-scored as ``score + aligned log-mel correlation``
(:func:`audioaudit.duplicates.verify.aligned_correlation`: the query and the candidate
aligned at their best lag, Pearson correlation over the overlap); the rest of the row is
dropped, as a search engine that verifies only its candidates would.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from audioaudit.detector.benchmark.dataset import BenchSet
from audioaudit.duplicates.verify import aligned_correlation, spectrograms


def verified_matrix(bench: BenchSet, matrix: np.ndarray, top_k: int = 10) -> tuple[np.ndarray, dict]:
    """(matrix re-scored on each query's ``top_k`` candidates, NaN elsewhere; cost figures)."""
    t0 = time.perf_counter()
    refs = spectrograms([r.path for r in bench.references])
    queries = spectrograms([str(Path(bench.root) / q.path) for q in bench.queries])
    t1 = time.perf_counter()
    m = np.where(np.isfinite(matrix), matrix, -np.inf)
    k = min(top_k, m.shape[1])
    cand = np.argsort(-m, axis=1)[:, :k]
    out = np.full(matrix.shape, np.nan, np.float64)
    for i, q in enumerate(queries):
        if q is None:
            continue
        corr = aligned_correlation(q, [refs[j] for j in cand[i]])
        out[i, cand[i]] = matrix[i, cand[i]] + np.nan_to_num(corr, nan=-1.0)
    t2 = time.perf_counter()
    n = max(1, len(queries))
    return out, {"spectrogram_seconds": round(t1 - t0, 2), "verify_seconds": round(t2 - t1, 2),
                 "ms_per_query": round(1000 * (t2 - t1) / n, 2), "candidates_per_query": k}
