"""Deterministic seeding: one `seed_everything`, and named sub-seeds for env, replay, evaluation, ..."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def derive_seed(seed: int, tag: str) -> int:
    """A stable 31-bit seed for the component `tag` of a run seeded with `seed` (independent of PYTHONHASHSEED)."""
    return zlib.crc32(f"{seed}:{tag}".encode()) & 0x7FFFFFFF


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); returns a torch.Generator for replay sampling.

    `deterministic` selects deterministic kernels and turns cudnn.benchmark off; otherwise benchmark is on.
    """
    random.seed(seed)
    np.random.seed(derive_seed(seed, "numpy"))
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    return torch.Generator().manual_seed(derive_seed(seed, "replay"))
