"""The resident-memory helpers of the runner (lossmooth/runner/memory.py)."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# 24 MiB of 4 MiB blocks, made and freed after a 16 MiB block (which in glibc's default mode raises
# its mmap threshold to 16 MiB, so the 4 MiB blocks then come from the heap and stay there once freed)
PROBE = """
import sys
import numpy as np
from lossmooth.runner.memory import proc_status, return_freed_memory
if sys.argv[1] == "on":
    assert return_freed_memory()
big = np.ones(16 << 20, np.uint8); del big
before = proc_status("VmRSS")
blocks = [np.ones(4 << 20, np.uint8) for _ in range(6)]
held = proc_status("VmRSS")
del blocks
print((held - before) >> 20, (held - proc_status("VmRSS")) >> 20)
"""


def _freed(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    held, released = (int(x) for x in out.stdout.split())
    return held, released


def test_freed_large_blocks_leave_the_resident_set_once_asked():
    held, released = _freed("on")
    assert held >= 20 and released >= 20  # all of it back to the OS at once
    held, released = _freed("off")
    assert held >= 20 and released <= 4  # glibc's default keeps it (what the LM's runs paid)
