"""``mel``: a log-mel mean+std descriptor with no weights — the yardstick every learned
encoder must beat.

Per clip: power mel spectrogram (16 kHz, 512-point FFT, 10 ms hop, 64 slaney mels,
50 Hz–8 kHz), in dB with an 80 dB floor below the clip's own maximum (librosa's
``power_to_db(top_db=80)``). The descriptor is the per-band mean over time, centred
(minus its average across bands, so a gain change does not move it), next to the
per-band standard deviation, each half L2-normalised and concatenated: 128 dims whose
cosine similarity weighs spectral shape and spectral variability equally.

No padding: statistics are taken over the clip's own frames (a clip shorter than one
FFT frame is zero-padded to one frame). Clips of equal length are analysed together, so
a clip's vector never depends on its batch. Windows: 10 s, like CLAP, hop 5 s by default.
"""
from __future__ import annotations

import numpy as np

from audioaudit.encoders.torch_base import BatchedEncoder, default_hop

MEL_SETTINGS = {
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 160,
    "n_mels": 64,
    "fmin": 50.0,
    "fmax": 8000.0,
    "top_db": 80.0,
}


class MelEncoder(BatchedEncoder):
    """Log-mel statistics; ``model`` is None (nothing to train)."""

    def __init__(self, *, batch_size: int = 64, device: str = "cpu", hop_seconds: float | None = None,
                 window_seconds: float = 10.0):
        import librosa
        import torch

        s = MEL_SETTINGS
        self.name = "mel"
        self.sample_rate = s["sample_rate"]
        self.dim = 2 * s["n_mels"]
        self.window_seconds = float(window_seconds)
        self.hop_seconds = default_hop(self.window_seconds, hop_seconds)
        super().__init__(batch_size=batch_size, device=device,
                         identity={"backend": "mel", "version": 1, "settings": dict(s), "padding": "none"})
        fb = librosa.filters.mel(sr=s["sample_rate"], n_fft=s["n_fft"], n_mels=s["n_mels"],
                                 fmin=s["fmin"], fmax=s["fmax"], htk=False, norm="slaney")
        self._fb = torch.from_numpy(fb.astype(np.float32)).to(self.device)
        self._window = torch.hann_window(s["n_fft"], periodic=True).to(self.device)

    def prepare(self, waves: list[np.ndarray]) -> list[tuple[list[int], "object"]]:
        """Group equal-length clips: [(indices, tensor [n, samples])]."""
        import torch

        n_fft = MEL_SETTINGS["n_fft"]
        groups: dict[int, list[int]] = {}
        fixed = [w if len(w) >= n_fft else np.pad(w, (0, n_fft - len(w))) for w in waves]
        for i, w in enumerate(fixed):
            groups.setdefault(len(w), []).append(i)
        return [(idx, torch.from_numpy(np.stack([fixed[i] for i in idx])).to(self.device)) for idx in groups.values()]

    def forward(self, inputs) -> "object":
        import torch

        n = sum(len(idx) for idx, _ in inputs)
        out = torch.empty(n, self.dim, device=self.device)
        for idx, x in inputs:
            out[idx] = self.describe(x)
        return out

    def describe(self, x):
        """[B, samples] float32 -> [B, 128] descriptor (see module docstring)."""
        import torch

        s = MEL_SETTINGS
        spec = torch.stft(x, n_fft=s["n_fft"], hop_length=s["hop_length"], window=self._window,
                          center=True, pad_mode="reflect", return_complex=True)
        power = torch.view_as_real(spec).square().sum(-1)  # |X|^2 without the sqrt
        mel = torch.matmul(self._fb, power)  # [B, mels, frames]
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - s["top_db"])
        mu = db.mean(dim=2)
        mu = mu - mu.mean(dim=1, keepdim=True)
        sd = db.std(dim=2, unbiased=False)
        half = torch.nn.functional.normalize
        return torch.cat([half(mu, dim=1), half(sd, dim=1)], dim=1)
