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


# 64 MiB of 64 KiB blocks (below even a lowered mmap threshold: heap blocks, as a compiler's are),
# interleaved with small blocks kept alive, so the freed ones sit between blocks in use and no
# trimming of the heap's top reaches them
TRIM_PROBE = """
import sys
import numpy as np
from lossmooth.runner.memory import proc_status, return_freed_memory, trim_heap
assert return_freed_memory()
before = proc_status("VmRSS")
freed, kept = [], []
for _ in range(1024):
    freed.append(np.ones(64 << 10, np.uint8))
    kept.append(np.ones(1 << 10, np.uint8))
held = proc_status("VmRSS")
del freed
after_free = proc_status("VmRSS")
if sys.argv[1] == "trim":
    assert trim_heap()
print((held - before) >> 20, (held - after_free) >> 20, (held - proc_status("VmRSS")) >> 20)
"""


def _trimmed(mode: str) -> tuple[int, int, int]:
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE, mode], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    return tuple(int(x) for x in out.stdout.split())


def test_trim_heap_returns_freed_blocks_between_blocks_in_use():
    held, on_free, trimmed = _trimmed("trim")
    assert held >= 60 and on_free <= 4  # freeing alone keeps them: they are not at the heap's top
    assert trimmed >= 56  # malloc_trim(0) hands the free pages back
    held, on_free, untrimmed = _trimmed("keep")
    assert held >= 60 and untrimmed <= 4


XLA_PROBE = """
import os
from lossmooth.runner.memory import apply_xla_flags
flag = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
assert apply_xla_flags((flag,)) and flag in os.environ["XLA_FLAGS"].split()
assert apply_xla_flags((flag,))  # already there: nothing to add
import jax
jax.devices()
assert not apply_xla_flags(("--xla_cpu_use_thunk_runtime=true",))  # the backend is up: too late
print("ok")
"""


def test_xla_flags_apply_before_the_backend_starts_only():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", XLA_PROBE], capture_output=True, text=True, timeout=120,
                         env={**env, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
