"""Observation model: reference architecture, init, sampling."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from twm_core.models.observation import ObservationModel, sample_onehot, sample_straight_through
from twm_core.presets import atari100k, debug


@pytest.fixture(scope="module")
def reference_model():
    torch.manual_seed(0)
    return ObservationModel(atari100k().obs)


def test_reference_encoder_decoder_shapes(reference_model):
    m = reference_model
    convs = m.encoder_cnn.convs
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (4, 48, (4, 4), (2, 2)), (48, 96, (4, 4), (2, 2)), (96, 192, (4, 4), (2, 2)), (192, 384, (4, 4), (2, 2))]
    assert [(l.in_features, l.out_features) for l in m.encoder_mlp.linears] == [(1536, 512), (512, 512),
                                                                                (512, 1024)]
    assert [(l.in_features, l.out_features) for l in m.decoder_mlp.linears] == [(1024, 768)]
    deconvs = m.decoder_cnn.convs
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in deconvs] == [
        (768, 192, 5), (192, 96, 5), (96, 48, 6), (48, 4, 6)]
    x = torch.randint(0, 256, (2, 3, 4, 64, 64), dtype=torch.uint8)
    logits = m.encode(x)
    assert logits.shape == (2, 3, 32, 32) and logits.dtype == torch.float32
    recon = m.decode(m.sample(logits))
    assert recon.shape == (2, 3, 4, 64, 64)


def test_reference_init(reference_model):
    m = reference_model
    # kaiming-uniform with the ReLU gain: bound = sqrt(3)·sqrt(2)/sqrt(fan_in), zero biases
    first = m.encoder_cnn.convs[0]
    bound = math.sqrt(3) * math.sqrt(2) / math.sqrt(4 * 4 * 4)
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound
    assert (first.bias == 0).all()
    last = m.encoder_mlp.linears[-1]  # linear gain on the logits layer
    assert last.weight.abs().max() <= math.sqrt(3) / math.sqrt(512) + 1e-7
    # the reference's init skips ConvTranspose2d: PyTorch default init, final bias not 0.5
    assert not torch.allclose(m.decoder_cnn.convs[-1].bias, torch.full((4,), 0.5))
    kaiming = ObservationModel(replace(atari100k().obs, decoder_init="kaiming"))
    assert torch.allclose(kaiming.decoder_cnn.convs[-1].bias, torch.full((4,), 0.5))


def test_straight_through_sample_is_one_hot_with_gradients():
    logits = torch.randn(5, 3, 8, 8, requires_grad=True)
    z = sample_straight_through(logits)
    assert torch.allclose(z.detach().sum(-1), torch.ones(5, 3, 8))
    assert torch.allclose(z.detach(), z.detach().round(), atol=1e-6)  # onehot + p - p.detach()
    (z * torch.randn_like(z)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_temperature_zero_is_argmax():
    logits = torch.randn(4, 2, 8, 8)
    z = sample_onehot(logits, 0)
    assert torch.equal(z.argmax(-1), logits.argmax(-1))


def test_sampling_follows_the_distribution():
    torch.manual_seed(0)
    probs = torch.tensor([0.7, 0.2, 0.1, 0.0])
    logits = probs.clamp(min=1e-9).log().expand(4000, 1, 4)
    freq = sample_onehot(logits, 1.0).mean(0)[0]
    assert torch.allclose(freq, probs, atol=0.03)


def test_bad_shapes_are_reported():
    m = ObservationModel(debug().obs)
    with pytest.raises(ValueError, match="obs must be"):
        m.encode(torch.zeros(2, 4, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="z must be"):
        m.decode(torch.zeros(2, 3, 7))
