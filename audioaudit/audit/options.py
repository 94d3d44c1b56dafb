"""What an audit is asked to do (``audioaudit audit`` options), one record passed down the audit."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AuditOptions:
    top_k: int = 10
    threshold: float | None = None
    threshold_on: str = "score"  # score | similarity (explicit thresholds only)
    same_class: bool = False
    nprobe: int | None = None
    ef_search: int | None = None
    batch_size: int = 32
    workers: int | None = 0
    progress: bool = True
    metadata: str | None = None  # CSV with path + seed/prompt/class; default: found in the folder
    run_name: str | None = None
    verify: bool = False  # re-read each match and add its aligned log-mel correlation (audit/verify.py)
