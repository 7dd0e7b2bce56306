"""benchmarks/accelerator_check.py in its reduced form, in-process: every part is printed with a
verdict, every figure is a finite positive number, and --out writes the same lines as markdown.
The supervised part runs at the tests' tiny shapes (tests/conftest.py's TINY)."""
import math
import re

import pytest

from tests.conftest import TINY

# the tiny model and batches of the shared test config (the default's data and schedule otherwise)
SUPERVISED = [o for o in TINY if o.split("=")[0] in ("model.widths", "model.hidden", "setting.target_batch",
                                                      "setting.source_batch", "setting.replay_pool",
                                                      "setting.eval_size")]


@pytest.fixture(scope="module")
def report():
    from benchmarks import accelerator_check

    return accelerator_check.run(reduced=True, steps=1, updates=2, repeats=1, supervised_overrides=SUPERVISED)


def test_every_part_has_its_figures_and_a_verdict(report):
    from benchmarks.accelerator_check import PARTS, REDUCED_SEEDS

    for part in PARTS:
        lines = report.lines[part]
        assert lines and all(ln.startswith(f"[{part}] ") for ln in lines), part
        assert sum("verdict: " in ln for ln in lines) == 1, lines
    text = "\n".join(ln for part in PARTS for ln in report.lines[part])
    assert not re.search(r"\b(nan|inf)\b", text, re.I), text
    names = {"peak_bf16", "peak_f32", "plan_bytes", *(f"seed_updates_per_s_{n}" for n in REDUCED_SEEDS)}
    assert names <= set(report.figures), report.figures
    assert sum(k.startswith("mfu_") for k in report.figures) == 2  # SmolLM2 and the OLMo-1B shape
    assert sum(k.startswith("tokens_per_s_") for k in report.figures) == 2
    for name, value in report.figures.items():
        assert math.isfinite(value) and value > 0, (name, value)
    # on CPU the device has no peak_bytes_in_use: said so, and the plan's figure only
    assert any("not available" in ln for ln in report.lines["memory"])


def test_markdown_holds_every_line(report):
    from benchmarks.accelerator_check import PARTS

    md = report.markdown("python benchmarks/accelerator_check.py --reduced")
    for part in PARTS:
        assert f"## {part}" in md
        assert all(ln in md for ln in report.lines[part])
    assert md.count("**") >= 2 * len(PARTS)  # each verdict in bold


def test_full_form_refuses_a_cpu(capsys):
    import jax

    from benchmarks import accelerator_check

    if jax.default_backend() != "cpu":
        pytest.skip("the full form runs on an accelerator")
    assert accelerator_check.main([]) == 2
    assert "--reduced" in capsys.readouterr().err
