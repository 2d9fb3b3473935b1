"""`keep_freed_memory`: a process that allocates and frees the same large tensors stops faulting their pages in
again at every step (glibc `mallopt`); `TWM_KEEP_FREED_MEMORY=0` leaves glibc's defaults."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys
import torch
from twm_core.allocator import keep_freed_memory
took = keep_freed_memory()
conv = torch.nn.Conv2d(16, 16, 3, padding=1)
x = torch.randn(32, 16, 64, 64)  # 8 MiB activations, allocated and freed by every step
def step():
    conv.zero_grad(set_to_none=True)
    conv(torch.nn.functional.silu(conv(x))).square().sum().backward()
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
sys.stdout.write(json.dumps({"took": took, "faults": faults}))
"""


def _probe(setting: str) -> dict[str, int]:
    env = {**os.environ, "TWM_KEEP_FREED_MEMORY": setting, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_pages_are_reused_instead_of_faulted_in_again():
    default, kept = _probe("0"), _probe("1")
    assert not default["took"] and kept["took"]
    assert default["faults"] > 10 * (8 << 20) // 4096, default  # glibc maps the activations afresh each step
    assert kept["faults"] < default["faults"] / 5, (kept, default)
