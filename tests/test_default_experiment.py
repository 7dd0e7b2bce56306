"""The default experiment at full size (slow: about 5 minutes on 2 CPU cores; not in CI).

    python -m pytest -m slow

Checks the committed finding on stand-in data: with the same source models and data order, loss
smoothing keeps more source accuracy than the hard switch (the paired CI excludes zero) and does not
lose target accuracy.
"""
import pytest

from lossmooth import cli
from lossmooth.results import aggregate as agg


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_default_experiment_reproduces_less_forgetting(tmp_path, capsys):
    results = tmp_path / "results"
    assert cli.main(["run", f"results_dir={results}", "logger=jsonl", "progress=false"]) == 0
    rows = agg.collect(str(results))
    assert len(rows) == 16
    (d,) = agg.paired_differences(rows, metrics=("source_acc_after", "final_target_acc"))
    assert d["method"] == "loss_smoothing" and d["n_pairs"] == 8
    assert d["source_acc_after_diff_lo"] > 0.0
    assert d["final_target_acc_diff"] > -0.01
