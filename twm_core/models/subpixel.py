"""A strided transposed convolution's forward pass as one ordinary convolution and a pixel shuffle (exact).

With stride s and a kernel of k = s·k' taps, output pixel (s·i + a, s·j + b) of `F.conv_transpose2d` sums the
input at (i − p, j − q) times the weight tap (a + s·p, b + s·q), p, q < k'. So each of the s² output phases (a, b)
is a k'×k' correlation of the (k' − 1)-padded input with the flipped taps of that phase: one `F.conv2d` with s²·C_out
output channels computes all phases, and a pixel shuffle interleaves them (only the summation order differs).

On a CPU, oneDNN runs that convolution several times faster than its deconvolution when the layer has few output
channels (s²·C_out <= C_in, e.g. the decoder's last layer, 16→4 at the catch width, 48→4 at the paper's: there
the deconvolution is the slowest layer per FLOP), and slower otherwise, which is why `ConvStack` uses it only
there. The backward pass is the one autograd runs for `F.conv_transpose2d` (`aten.convolution_backward` of the
transposed convolution), so the gradients are the plain path's, bit for bit, given the same output gradient.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def subpixel_applies(layer: nn.ConvTranspose2d) -> bool:
    """Whether `conv_transpose2d_subpixel` computes this layer and pays (few output channels: s²·C_out <= C_in)."""
    c_in, c_out, kh, kw = layer.weight.shape
    stride = layer.stride[0]
    plain = (layer.padding == (0, 0) and layer.output_padding == (0, 0) and layer.dilation == (1, 1)
             and layer.groups == 1 and layer.stride == (stride, stride))
    return plain and stride > 1 and kh == kw and kh % stride == 0 and stride * stride * c_out <= c_in


def _phase_weight(weight: torch.Tensor, stride: int) -> torch.Tensor:
    """The s² phases' flipped taps as one conv2d weight, phase-major: channel (a·s + b)·C_out + o.

    Shapes: (C_in, C_out, s·k', s·k') -> (s²·C_out, C_in, k', k')
    """
    c_in, c_out, k, _ = weight.shape
    taps = k // stride
    phases = weight.reshape(c_in, c_out, taps, stride, taps, stride)  # (C_in, C_out, p, a, q, b)
    phases = phases.permute(3, 5, 1, 0, 2, 4).flip(-2, -1)  # (a, b, C_out, C_in, k'−1−p, k'−1−q)
    return phases.reshape(stride * stride * c_out, c_in, taps, taps)  # (s²·C_out, C_in, k', k')


def subpixel_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
    """`F.conv_transpose2d(x, weight, bias, stride)` without autograd bookkeeping; the output has x's layout
    (channels-last in, channels-last out).

    Shapes: x (N, C_in, H, W), weight (C_in, C_out, s·k', s·k') -> (N, C_out, s·(H + k' − 1), s·(W + k' − 1))
    """
    n, c_out, taps = x.shape[0], weight.shape[1], weight.shape[2] // stride
    phase_bias = None if bias is None else bias.repeat(stride * stride)  # (s²·C_out,) phase-major
    y = F.conv2d(F.pad(x, (taps - 1,) * 4), _phase_weight(weight, stride), phase_bias)  # (N, s²·C_out, H', W')
    h, w = y.shape[-2:]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        pixels = y.permute(0, 2, 3, 1).reshape(n, h, w, stride, stride, c_out)  # (N, H', W', a, b, C_out)
        pixels = pixels.permute(0, 1, 3, 2, 4, 5).reshape(n, h * stride, w * stride, c_out)  # (N, s·H', s·W', C)
        return pixels.permute(0, 3, 1, 2)  # (N, C_out, s·H', s·W'), channels-last
    phases = y.reshape(n, stride, stride, c_out, h, w)  # (N, a, b, C_out, H', W')
    return phases.permute(0, 3, 4, 1, 5, 2).reshape(n, c_out, h * stride, w * stride)  # (N, C_out, s·H', s·W')


class _SubpixelConvTranspose(torch.autograd.Function):
    """Forward by `subpixel_forward`; backward as autograd's for the transposed convolution."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return subpixel_forward(x, weight, bias, stride)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        s = ctx.stride
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[1]], [s, s], [0, 0], [1, 1], True, [0, 0], 1, mask)
        return grad_x, grad_w, grad_b, None


def conv_transpose2d_subpixel(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                              stride: int) -> torch.Tensor:
    """`F.conv_transpose2d(x, weight, bias, stride)` (no padding, kernel a multiple of the stride) through one
    conv2d and a pixel shuffle, with the transposed convolution's own backward.

    Shapes: x (N, C_in, H, W), weight (C_in, C_out, k, k), bias (C_out,) -> (N, C_out, s·(H−1) + k, s·(W−1) + k)
    """
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _SubpixelConvTranspose.apply(x, weight, bias, stride)
    return subpixel_forward(x, weight, bias, stride)
