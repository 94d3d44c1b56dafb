"""Contrastive losses for copy detection (pure torch functions on L2-normalised rows)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """max(0, ‖a − p‖ − ‖a − n‖ + margin), mean over the batch (Schroff et al. 2015;
    EDMSound's copy detector uses it with margin 0.2 on a CLAP + MLP embedding)."""
    return F.triplet_margin_loss(anchor, positive, negative, margin=margin, p=2.0)


def info_nce(z: torch.Tensor, ids: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """Multi-positive InfoNCE / NT-Xent (Chen et al. 2020; SSCD, Pizzi et al. 2022 eq. 2).

    ``z``: (N, d) L2-normalised embeddings of views; ``ids``: (N,) the clip each view
    comes from. Every other view of the same clip is a positive; all views of other
    clips are negatives. For row i with positive set P(i):
        ℓ_i = −mean_{p ∈ P(i)} log( exp(s_ip/τ) / Σ_{k≠i} exp(s_ik/τ) ).
    Rows without a positive are ignored.
    """
    sim = z @ z.t() / tau
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (ids[:, None] == ids[None, :]) & ~eye
    has_pos = pos.any(dim=1)
    if not bool(has_pos.any()):
        return z.sum() * 0.0
    per_row = (log_prob.masked_fill(~pos, 0.0).sum(dim=1) / pos.sum(dim=1).clamp(min=1))[has_pos]
    return -per_row.mean()


def koleo(z: torch.Tensor, ids: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko–Leonenko differential-entropy regulariser (Sablayrolles et al. 2019,
    "Spreading vectors"; SSCD eq. 3): L_KoLeo = −(1/n) Σ_i log(min_{j≠i} ‖z_i − z_j‖).

    Minimising it spreads the embeddings out. As in SSCD, only views of *other* clips
    count as neighbours when ``ids`` is given (a view's own copies are meant to be close).
    """
    with torch.no_grad():
        sim = z @ z.t()
        mask = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
        if ids is not None:
            mask = mask | (ids[:, None] == ids[None, :])
        nn_idx = sim.masked_fill(mask, float("-inf")).argmax(dim=1)
    dist = (z - z[nn_idx]).norm(dim=1)
    return -torch.log(dist + eps).mean()


def pos_neg_similarity(z: torch.Tensor, ids: torch.Tensor) -> tuple[float, float]:
    """Mean cosine similarity of positive pairs (same clip) and negative pairs (others)."""
    with torch.no_grad():
        sim = z @ z.t()
        eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
        same = (ids[:, None] == ids[None, :]) & ~eye
        diff = ids[:, None] != ids[None, :]
        pos = float(sim[same].mean()) if bool(same.any()) else float("nan")
        neg = float(sim[diff].mean()) if bool(diff.any()) else float("nan")
    return pos, neg
