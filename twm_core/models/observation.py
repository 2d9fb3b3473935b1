"""Observation model φ: a CNN encoder to 32×32 categorical latents, and a transposed-CNN decoder (method.md §4.1).

Encoder (base width h = 48): Conv 4→h→2h→4h→8h (k4 s2, no padding: 64→31→14→6→2), SiLU after every conv, flatten
to 8h·2·2 = 1536, MLP 1536→512→512→C·K logits. Decoder: Linear C·K→16h + SiLU, reshape to (16h, 1, 1), ConvT
16h→4h→2h→h→F with kernels 5, 5, 6, 6 and stride 2 (1→5→13→30→64); its output is the mean of a unit-variance Normal
over the F stacked frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twm_core.config import ObsModelConfig
from twm_core.models.layers import MLP, ConvStack

FRAME_SIZE = 64


def preprocess_obs(obs: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 frames in [0, 255] to floats in [0, 1] (the reference's obs/255).

    With `channels_last` the same values are laid out with the F frames innermost in memory (what channels-last
    convolutions read): the encoder then needs no layout copy, and the decoder loss compares two tensors of one
    layout (mixed layouts make its elementwise passes several times slower).
    Shapes: (..., F, 64, 64) -> (..., F, 64, 64)
    """
    if not channels_last:
        return obs.float() / 255.0
    frames_last = torch.empty(obs.movedim(-3, -1).shape, dtype=torch.float32, device=obs.device)  # (..., 64, 64, F)
    return frames_last.copy_(obs.movedim(-3, -1)).div_(255.0).movedim(-1, -3)  # (..., F, 64, 64), F innermost


def sample_straight_through(logits: torch.Tensor) -> torch.Tensor:
    """One-hot sample with straight-through gradients: `onehot + probs - probs.detach()` (temperature 1).

    Shapes: (..., C, K) -> (..., C, K)
    """
    probs = logits.softmax(-1)
    index = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(probs.shape[:-1])
    onehot = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
    return onehot + probs - probs.detach()


def sample_onehot(logits: torch.Tensor, temperature: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One-hot sample without gradients; temperature 0 takes the argmax of each categorical. `generator` draws the
    sample (default: torch's global RNG).

    Shapes: (..., C, K) -> (..., C, K)
    """
    with torch.no_grad():
        if temperature == 0:
            index = logits.argmax(-1, keepdim=True)  # (..., C, 1)
        else:
            # x / 1.0 == x exactly: skip the division at temperature 1 (imagination)
            probs = (logits if temperature == 1 else logits / temperature).softmax(-1)
            flat = probs.reshape(-1, probs.shape[-1])  # (N·C, K)
            index = torch.multinomial(flat, 1, generator=generator).reshape(*probs.shape[:-1], 1)
        # scatter into zeros: the same one-hot as F.one_hot(...).to(dtype), without the int64 intermediate
        return torch.zeros_like(logits).scatter_(-1, index, 1.0)


class ObservationModel(nn.Module):
    """Encoder and decoder of stacked 64×64 grayscale frames."""

    def __init__(self, cfg: ObsModelConfig, frame_stack: int = 4) -> None:
        super().__init__()
        self.cfg = cfg
        self.frame_stack = frame_stack
        h = cfg.channels
        self.encoder_cnn = ConvStack((frame_stack, h, 2 * h, 4 * h, 8 * h), (4, 4, 4, 4), post_activation=True)
        self.encoder_cnn.init_kaiming_()
        self.encoder_mlp = MLP(8 * h * 2 * 2, cfg.mlp_dims, cfg.z_dim, dropout=cfg.dropout)
        self.decoder_mlp = MLP(cfg.z_dim, (), 16 * h, dropout=cfg.dropout, post_activation=True)
        self.decoder_cnn = ConvStack((16 * h, 4 * h, 2 * h, h, frame_stack), (5, 5, 6, 6), transpose=True)
        if cfg.decoder_init == "kaiming":
            self.decoder_cnn.init_kaiming_(final_bias=0.5)
        # else: PyTorch's default init, as the reference code actually runs (see ObsModelConfig.decoder_init)

    @property
    def z_dim(self) -> int:
        return self.cfg.z_dim

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Latent logits of stacked frames (uint8 or floats in [0, 1]).

        Shapes: (B, T, F, 64, 64) -> (B, T, C, K)
        """
        if obs.dim() != 5 or obs.shape[2:] != (self.frame_stack, FRAME_SIZE, FRAME_SIZE):
            raise ValueError(f"obs must be (B, T, {self.frame_stack}, 64, 64), got {tuple(obs.shape)}")
        x = self.preprocess(obs) if obs.dtype == torch.uint8 else obs
        batch, time = x.shape[:2]
        x = x.flatten(0, 1)  # (B·T, F, 64, 64)
        x = self.encoder_cnn(x).flatten(1)  # (B·T, 8h·2·2)
        logits = self.encoder_mlp(x)  # (B·T, C·K)
        return logits.reshape(batch, time, self.cfg.z_categoricals, self.cfg.z_categories)  # (B, T, C, K)

    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        """`preprocess_obs` in the memory layout this model's convolutions read (`channels_last`).

        Shapes: (..., F, 64, 64) uint8 -> (..., F, 64, 64) floats in [0, 1]
        """
        return preprocess_obs(obs, self.encoder_cnn.channels_last)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean reconstruction of the stacked frames from flat one-hot latents.

        Shapes: (B, T, C·K) -> (B, T, F, 64, 64)
        """
        if z.dim() != 3 or z.shape[-1] != self.z_dim:
            raise ValueError(f"z must be (B, T, {self.z_dim}), got {tuple(z.shape)}")
        batch, time = z.shape[:2]
        x = self.decoder_mlp(z.flatten(0, 1))  # (B·T, 16h)
        x = self.decoder_cnn(x[:, :, None, None])  # (B·T, F, 64, 64)
        return x.reshape(batch, time, *x.shape[1:])  # (B, T, F, 64, 64)

    def sample(self, logits: torch.Tensor, temperature: float = 1.0, straight_through: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Flat one-hot latents: straight-through (training), sampled (imagination) or argmax (temperature 0).

        Shapes: (B, T, C, K) -> (B, T, C·K)
        """
        if straight_through:
            if temperature != 1.0:
                raise ValueError("straight-through sampling uses temperature 1")
            z = sample_straight_through(logits)
        else:
            z = sample_onehot(logits, temperature, generator)
        return z.flatten(-2)  # (B, T, C·K)

    @torch.no_grad()
    def encode_sample(self, obs: torch.Tensor, temperature: float = 0.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode and sample without gradients; temperature 0 (argmax) is what acting uses.

        Shapes: (B, T, F, 64, 64) -> (B, T, C·K)
        """
        return self.sample(self.encode(obs), temperature, generator=generator)
