"""Exact fast paths of the models: module flags, on by default, each computing the plain path's function up to
float rounding (module flags, so that tests/core/test_fastpaths.py can compare both paths on fresh random inputs):

- `ConvStack.fast_path`: the decoder's first transposed convolution (1×1 input) as one matmul;
- `DynamicsModel.step(kv_cache=True)`: keys and values of the memory in preallocated buffers (`KVCache`), and the
  last layer run for the a_t token alone.

The opt-in settings of `TrainConfig` (amp, compile, channels_last, fused_attention) are applied by
`twm_core.performance`; its names are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

from torch import nn

from twm_core.models.layers import ConvStack
from twm_core.performance import AMP_DTYPES, apply_performance_settings, autocast, module_device

__all__ = ["set_exact_fast_paths", "AMP_DTYPES", "apply_performance_settings", "autocast", "module_device"]


def set_exact_fast_paths(module: nn.Module, enabled: bool) -> nn.Module:
    """Switch the exact fast paths of every submodule on or off (the KV cache is a `step` argument instead)."""
    for m in module.modules():
        if isinstance(m, ConvStack):
            m.fast_path = enabled
    return module
