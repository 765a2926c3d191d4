"""mmtrust.runtime: the process-level malloc setting the CLI and benchmark rows apply."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import resource, sys
import torch
from mmtrust.runtime import keep_freed_memory
ok = keep_freed_memory()
assert keep_freed_memory() is ok  # idempotent
x = torch.ones(1)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # a forward in miniature: two 64 MiB activations alive at once, then freed
    y = torch.ones(16 << 20)
    z = y * 2
    del y, z
for _ in range(10):  # warm-up: the heap grows to the working set (plus fragmentation), then stays
    step()
per_step = []
for _ in range(8):
    f0 = faults()
    step()
    per_step.append(faults() - f0)
print(ok, min(per_step))  # the steady state: glibc may need a few more steps to settle its free lists
"""


def _run(env_value: str | None) -> tuple[bool, int]:
    import os

    env = dict(os.environ)
    env.pop("MMTRUST_KEEP_FREED_MEMORY", None)
    if env_value is not None:
        env["MMTRUST_KEEP_FREED_MEMORY"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    ok, faults = out.stdout.split()
    return ok == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc setting")
def test_keep_freed_memory_reuses_pages_and_can_be_turned_off():
    ok, faults = _run(None)
    off, faults_off = _run("0")
    assert off is False
    # without it every 64 MiB tensor is a fresh mmap: ~16,384 page faults each, two a step, every step
    assert faults_off > 16000
    if ok:  # glibc: the freed blocks are reused, (almost) no page is faulted in again
        assert faults < faults_off / 10
