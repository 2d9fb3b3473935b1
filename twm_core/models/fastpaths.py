"""Performance switches of the models: the exact fast paths (module flags) and the opt-in `TrainConfig` settings.

Exact fast paths, on by default (module flags, so that tests/core/test_fastpaths.py can compare both paths on
fresh random inputs; each computes the plain path's function up to float rounding):
- `ConvStack.fast_path`: the decoder's first transposed convolution (1×1 input) as one matmul;
- `DynamicsModel.step(kv_cache=True)`: keys and values of the memory in preallocated buffers (`KVCache`), and the
  last layer run for the a_t token alone.

Opt-in settings (`TrainConfig`; `apply_performance_settings` sets them on built models, idempotently):
- `amp = "bf16"`: forward passes under `torch.autocast(device, bfloat16)`, outputs cast back to fp32 before the
  losses and the sampling (`autocast`). Not exact: bf16 has an 8-bit mantissa. The authors trained in fp32.
- `compile`: `torch.compile` of every `ConvStack` and `MLP` (in place, `nn.Module.compile`: state dict keys are
  unchanged). The Transformer-XL is left eager: its number of keys changes at every imagination step.
- `channels_last`: `ConvStack` feeds its convolutions NHWC inputs (weights stay as they are).
- `fused_attention`: `RelativeMultiheadSelfAttention.fused_attention`, F.scaled_dot_product_attention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from twm_core.config import TrainConfig
from twm_core.models.layers import MLP, ConvStack
from twm_core.models.transformer_xl import RelativeMultiheadSelfAttention

AMP_DTYPES = {"bf16": torch.bfloat16}


def set_exact_fast_paths(module: nn.Module, enabled: bool) -> nn.Module:
    """Switch the exact fast paths of every submodule on or off (the KV cache is a `step` argument instead)."""
    for m in module.modules():
        if isinstance(m, ConvStack):
            m.fast_path = enabled
    return module


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@contextlib.contextmanager
def autocast(amp: str, device: torch.device) -> Iterator[None]:
    """`torch.autocast(device.type, bfloat16)` for amp 'bf16', nothing for 'none'. Callers cast the outputs
    they keep back to fp32 (`.float()`), so losses, sampling and the optimizer see fp32 tensors."""
    if amp == "none":
        yield
        return
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be 'none' or one of {sorted(AMP_DTYPES)}, got {amp!r}")
    with torch.autocast(device.type, dtype=AMP_DTYPES[amp]):
        yield


def apply_performance_settings(train: TrainConfig, *modules: nn.Module) -> None:
    """Set `train.amp`, `compile`, `channels_last` and `fused_attention` on built models (idempotent: a module
    already set up with the same values is left alone, so the update functions may call this every time).

    The amp setting is stored as the module attribute `amp`, read by the update functions that get no config.
    """
    settings = (train.amp, train.compile, train.channels_last, train.fused_attention)
    for module in modules:
        if getattr(module, "_performance_settings", None) == settings:
            continue
        module.amp = train.amp
        for m in module.modules():
            if isinstance(m, RelativeMultiheadSelfAttention):
                m.fused_attention = train.fused_attention
            if isinstance(m, ConvStack):
                m.channels_last = train.channels_last
            if isinstance(m, ConvStack | MLP):
                if train.compile and m._compiled_call_impl is None:
                    m.compile()
                elif not train.compile:
                    m._compiled_call_impl = None  # back to eager
        module._performance_settings = settings
