"""scripts/shared_runs.py: two jobs' shared runs are compared row by row, their places left out."""
import importlib.util
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("shared_runs", os.path.join(HERE, "..", "scripts", "shared_runs.py"))
shared_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shared_runs)

HARD = {"lr": 0.001, "schedule": "hard"}
SMOOTH = {"T": 100.0, "lr": 0.001, "schedule": "linear"}


def _job(path, runs, target_acc=0.5):
    """A run directory holding ``runs`` [(method, numbers, seed)] in that order (their run_index)."""
    os.makedirs(path)
    rows, summaries = [], []
    for seed in sorted({s for _, _, s in runs}):
        rows.append({"phase": "source", "seed": seed, "step": 10, "source_acc": 0.6 + seed / 100})
    for i, (method, hp, seed) in enumerate(runs):
        acc = target_acc + seed / 100 + (0.01 if method == "loss_smoothing" else 0.0)
        rows.append({"phase": "adapt", "method": method, "hparams": hp, "seed": seed, "step": 0,
                     "run_index": i, "target_acc": acc})
        summaries.append({"method": method, "hparams": hp, "seed": seed, "run_index": i,
                          "summary": {"final_target_acc": acc}})
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(path, "runs.json"), "w") as f:
        json.dump(summaries, f)
    return str(path)


def test_the_same_runs_at_other_places_agree_and_a_changed_number_is_found(tmp_path):
    pilot = _job(tmp_path / "pilot", [("hard_switch", HARD, s) for s in range(4)])
    default = _job(tmp_path / "default", [(m, hp, s) for m, hp in (("hard_switch", HARD), ("loss_smoothing", SMOOTH))
                                          for s in range(6)])
    rc, report = shared_runs.compare(pilot, default)
    assert rc == 0, report
    assert report.startswith("4 shared runs (hard_switch; seeds 0-3): 8 metric rows compared, 0 differ")
    other = _job(tmp_path / "other", [("hard_switch", HARD, s) for s in range(4)], target_acc=0.5 + 1e-7)
    rc, report = shared_runs.compare(pilot, other)
    assert rc == 1 and "4 differ" in report and "first differing row" in report


def test_no_shared_run_or_a_missing_file_is_refused(tmp_path):
    a = _job(tmp_path / "a", [("hard_switch", HARD, 0)])
    b = _job(tmp_path / "b", [("hard_switch", HARD, 1)])
    assert shared_runs.compare(a, b)[0] == 2
    os.remove(os.path.join(b, "runs.json"))
    rc, report = shared_runs.compare(a, b)
    assert rc == 2 and "no runs.json" in report


def test_the_first_differing_row_is_the_earliest_step(tmp_path):
    """Steps compare as numbers: a run that differs from step 2048 on is reported at 2048, not 10240."""
    def job(path, shift):
        os.makedirs(path)
        rows = [{"phase": "adapt", "method": "hard_switch", "hparams": HARD, "seed": 6, "step": step, "run_index": 0,
                 "target_acc": 0.5 + (shift if step else 0.0)} for step in (0, 2048, 10240)]
        with open(os.path.join(path, "metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        with open(os.path.join(path, "runs.json"), "w") as f:
            json.dump([{"method": "hard_switch", "hparams": HARD, "seed": 6, "summary": {}}], f)
        return str(path)

    rc, report = shared_runs.compare(job(tmp_path / "a", 0.0), job(tmp_path / "b", 0.1))
    assert rc == 1 and "2 differ" in report
    assert "first differing row ('adapt', 'hard_switch', '" in report and "', 6, 2048)" in report
