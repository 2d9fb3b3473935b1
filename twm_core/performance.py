"""How a process runs the models: the device, and the opt-in performance settings of `TrainConfig`.

- `resolve_device`: the `--device` / `TWM_DEVICE` string ('auto', 'cpu', 'cuda', 'cuda:1') as a torch device.
- `apply_performance_settings`: `train.amp`, `compile`, `channels_last` and `fused_attention` set on built models.
  The `Trainer` and `Agent.build` apply them where they build their models; the entry points that may also get
  models built elsewhere (`world_model_update` and the pretraining updates, `imagine`, `PolicyRunner`) apply them
  again, which is a no-op for models already set up (the call is idempotent).
- `autocast`: the forward passes' precision for `train.amp`, read by the update functions.

The settings (see also README "Performance"):
- `amp = "bf16"`: forward passes under `torch.autocast(device, bfloat16)`, outputs cast back to fp32 before the
  losses and the sampling (`autocast`). Not exact: bf16 has an 8-bit mantissa. The authors trained in fp32.
- `compile`: `torch.compile` of every `ConvStack` and `MLP` (in place, `nn.Module.compile`: state dict keys are
  unchanged). The Transformer-XL is left eager: its number of keys changes at every imagination step.
- `channels_last`: `ConvStack` feeds its convolutions NHWC inputs (weights stay as they are).
- `fused_attention`: `RelativeMultiheadSelfAttention.fused_attention`, F.scaled_dot_product_attention.

Threads are not a config setting: a training process takes torch's default, bounded by `OMP_NUM_THREADS` in the
environment its launcher gives it (the backend's job scheduler passes it through); `bench/` sets `--threads` and
the backend its `inspect_threads` for their own processes. Determinism (`cudnn.benchmark`, deterministic kernels)
belongs to the seed, in `twm_core.seeding.seed_everything`. The exact fast paths, on by default, are module flags
(`twm_core.models.fastpaths`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from twm_core.models.layers import MLP, ConvStack
from twm_core.models.transformer_xl import RelativeMultiheadSelfAttention

if TYPE_CHECKING:
    from twm_core.config import TrainConfig

AMP_DTYPES = {"bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """'auto' → CUDA when available, else CPU; any other name as given (ValueError for CUDA without CUDA)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available")
    return torch.device(device)


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's (first) parameters."""
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
        cast(Any, module).amp = train.amp  # read back by the update functions that get no config
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
        cast(Any, module)._performance_settings = settings
