"""The from-scratch conv detector takes any clip length: short views crashed training on real clips."""
from __future__ import annotations

import torch

from audioaudit.encoders.scratch import ConvConfig, ConvEncoderNet


def test_conv_net_embeds_clips_down_to_one_sample():
    net = ConvEncoderNet(ConvConfig()).eval()
    with torch.no_grad():
        for n in (1, 7, 1600, net.min_samples - 1, net.min_samples, 16000):
            y = net(torch.randn(3, n) * 0.1)
            assert y.shape == (3, 128) and torch.isfinite(y).all()


def test_padding_only_where_the_net_would_have_failed():
    net = ConvEncoderNet(ConvConfig()).eval()
    x = torch.randn(2, net.min_samples) * 0.1
    with torch.no_grad():
        a = net(x)
        net.min_samples = 0  # no padding: the same input gives the same vectors
        assert torch.equal(a, net(x))
        try:
            net(x[:, :-1])
            raise AssertionError("one sample shorter should not fit the unpadded net")
        except RuntimeError as e:
            assert "too small" in str(e)
