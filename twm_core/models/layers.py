"""Building blocks shared by the models: MLPs and CNN stacks with the reference initialisation.

Initialisation as in the reference (`jrobine/twm` nets.py:54-107, method.md §2 "Initialisation"): `nn.Linear` and
`nn.Conv2d` weights are kaiming-uniform (fan-in) with the ReLU gain (used for SiLU), biases zero, and the last layer
of a stack gets the linear gain unless the stack ends with an activation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from twm_core.models.subpixel import conv_transpose2d_subpixel, subpixel_applies

RELU_GAIN = math.sqrt(2.0)  # torch.nn.init.calculate_gain('relu'); the reference uses it for SiLU
LINEAR_GAIN = 1.0


def kaiming_uniform_(weight: torch.Tensor, gain: float) -> None:
    """Uniform(-b, b) with b = sqrt(3) · gain / sqrt(fan_in), the reference's `_kaiming_uniform_`."""
    fan_in = weight.shape[1] * (weight[0][0].numel() if weight.dim() > 2 else 1)
    bound = math.sqrt(3.0) * gain / math.sqrt(fan_in)
    with torch.no_grad():
        weight.uniform_(-bound, bound)


def init_layer_(layer: nn.Linear | nn.Conv2d, gain: float, bias: float = 0.0, orthogonal: bool = False) -> None:
    """Kaiming-uniform (or orthogonal) weight with `gain`, constant bias."""
    if orthogonal:
        nn.init.orthogonal_(layer.weight, gain)
    else:
        kaiming_uniform_(layer.weight, gain)
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)


class MLP(nn.Module):
    """Linear layers with SiLU between them (and optionally before the first / after the last).

    `pre_activation` applies SiLU to the input first (the dynamics heads read SiLU(h)); `post_activation` ends with
    SiLU (the token embeddings). Dropout follows each hidden activation. `final_bias` overrides the last bias.
    `orthogonal` uses orthogonal instead of kaiming-uniform weights (the actor and critic), same gains.

    Shapes: (..., in_dim) -> (..., out_dim)
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, *, dropout: float = 0.0,
                 pre_activation: bool = False, post_activation: bool = False,
                 final_bias: float | None = None, orthogonal: bool = False) -> None:
        super().__init__()
        dims = (in_dim, *hidden_dims, out_dim)
        self.pre_activation = pre_activation
        self.post_activation = post_activation
        linears = [nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:], strict=True)]
        self.linears = nn.ModuleList(linears)
        self.act = nn.SiLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        for layer in linears:
            init_layer_(layer, RELU_GAIN, orthogonal=orthogonal)
        last = linears[-1]
        if not post_activation:
            init_layer_(last, LINEAR_GAIN, orthogonal=orthogonal)
        if final_bias is not None:
            nn.init.constant_(last.bias, final_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_activation:
            x = self.act(x)
        for layer in self.linears[:-1]:
            x = self.dropout(self.act(layer(x)))
        x = self.linears[-1](x)
        return self.act(x) if self.post_activation else x


def conv_transpose2d_1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.conv_transpose2d` of a 1×1 input (no padding): every output pixel is a weighted sum of the input
    channels, so the whole layer is one matmul (exact; only the summation order differs).

    Shapes: x (B, C_in, 1, 1), weight (C_in, C_out, k, k), bias (C_out,) -> (B, C_out, k, k)
    """
    batch = x.shape[0]
    c_in, c_out, kh, kw = weight.shape
    flat = weight.reshape(c_in, c_out * kh * kw)  # (C_in, C_out·k·k), output channel-major like the conv
    if bias is None:
        out = x.reshape(batch, c_in) @ flat
    else:
        out = torch.addmm(bias.repeat_interleave(kh * kw), x.reshape(batch, c_in), flat)
    return out.view(batch, c_out, kh, kw)


class ConvStack(nn.Module):
    """Conv2d layers (or ConvTranspose2d with `transpose=True`) with SiLU between them.

    Fast paths (`fast_path`, a module flag, on by default; exact, tests/core/test_fastpaths.py): a transposed layer
    on a 1×1 input (the decoder's first) runs as one matmul (`conv_transpose2d_1x1`), about 10× faster than
    oneDNN's deconvolution on a CPU; a strided transposed layer with few output channels (the decoder's last) runs
    its forward as one convolution and a pixel shuffle (`subpixel.conv_transpose2d_subpixel`; the other layers
    measured slower that way). The parameters are unchanged.

    Shapes: (B, C_in, H, W) -> (B, C_out, H', W')
    """

    def __init__(self, channels: Sequence[int], kernel_sizes: Sequence[int], *, stride: int = 2,
                 transpose: bool = False, post_activation: bool = False) -> None:
        super().__init__()
        if len(kernel_sizes) != len(channels) - 1:
            raise ValueError(f"need {len(channels) - 1} kernel sizes, got {len(kernel_sizes)}")
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.convs = nn.ModuleList(
            conv(i, o, k, stride) for i, o, k in zip(channels[:-1], channels[1:], kernel_sizes, strict=True))
        self.act = nn.SiLU()
        self.post_activation = post_activation
        self.fast_path = True
        self.channels_last = False
        """Opt-in (`TrainConfig.channels_last`): NHWC inputs for the convolutions; same function."""

    def _layer(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.fast_path and isinstance(layer, nn.ConvTranspose2d) and x.shape[-2:] == (1, 1) \
                and layer.padding == (0, 0) and layer.output_padding == (0, 0) and layer.dilation == (1, 1) \
                and layer.groups == 1:
            return conv_transpose2d_1x1(x, layer.weight, layer.bias)
        if self.fast_path and isinstance(layer, nn.ConvTranspose2d) and subpixel_applies(layer):
            return conv_transpose2d_subpixel(x, layer.weight, layer.bias, layer.stride[0])
        return layer(x)

    def init_kaiming_(self, final_bias: float = 0.0) -> None:
        """Reference init: ReLU gain, linear gain on the last layer unless it is followed by SiLU."""
        for layer in self.convs:
            init_layer_(layer, RELU_GAIN)  # type: ignore[arg-type]
        last = self.convs[-1]
        init_layer_(last, RELU_GAIN if self.post_activation else LINEAR_GAIN, final_bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.convs[:-1]:
            x = self.act(self._layer(layer, x))
        x = self._layer(self.convs[-1], x)
        return self.act(x) if self.post_activation else x
