"""The run plan (:mod:`lossmooth.runner.plan`): every job's run indices, labels, pair keys and
checkpoint tags, computed once. Two lines, three runs in two batches, a sequence of two switches:
switch s of line l numbers run i as (s L + l) R + i, and the whole-sequence rows as (S L + l) R + i."""
from types import SimpleNamespace

from lossmooth.runner.plan import LineFacts, make_plan

RUNS = [{"name": "hard_switch", "seed": 0, "hparams": {}}, {"name": "loss_smoothing", "seed": 0, "hparams": {"T": 5.0}},
        {"name": "hard_switch", "seed": 1, "hparams": {}}]
GROUPS = [[0, 2], [1]]
SWITCHES = [{"switch": 1, "shift": "blur", "severity": 1.0}, {"switch": 2, "shift": "inversion", "severity": 0.5}]


def _plan(switches, lines=("ppo", "td3"), line_key="algo"):
    setting = SimpleNamespace(line_key=line_key, lr_key=None)
    spec = SimpleNamespace(seed=3, num_seeds=2, sweep={"T": [5.0]})
    cfg = {"algo": {line: {"lr": i} for i, line in enumerate(lines)}, "setting": {"name": "x"}}
    facts = {line: LineFacts(chunks=(4, 3), context={"model": line}, identity={}, switches=switches) for line in lines}
    return make_plan(setting, cfg, spec, RUNS, GROUPS, list(lines), facts)


def test_run_indices_follow_the_formula_and_never_repeat():
    plan = _plan(SWITCHES)
    L, R, S = 2, 3, 2
    seen = []
    for li, lp in enumerate(plan.lines):
        for batch, g in zip(lp.batches, GROUPS):
            for s, job in enumerate(batch.switches):
                assert job.index == [(s * L + li) * R + i for i in g]
                assert [x["run_index"] for x in job.ids] == job.index
                assert all(x["switch"] == s + 1 and x["algo"] == lp.line for x in job.ids)
                seen += job.index
            seq = batch.sequence
            assert seq.index == [(S * L + li) * R + i for i in g]
            assert seq.switch_runs == [job.index for job in batch.switches]
            seen += seq.index
    assert sorted(seen) == list(range((S + 1) * L * R))


def test_labels_tags_keys_and_the_progress_total():
    plan = _plan(SWITCHES)
    lp = plan.lines[1]
    first, second = lp.batches[1].switches
    assert first.names == ["td3/loss_smoothing[T=5]/seed0@switch1"]
    assert (first.tag, second.tag) == ("td3-adapt1", "td3-adapt1-switch2")  # switch 1 keeps the one-switch tag
    assert len({first.pair_key, second.pair_key, lp.batches[1].sequence.pair_key}) == 3
    assert lp.batches[0].switches[0].pair_key == first.pair_key  # batches of one switch pair with each other
    assert plan.lines[0].batches[0].switches[0].pair_key != lp.batches[0].switches[0].pair_key  # lines do not
    assert (lp.source.tag, lp.source.names, lp.source.seeds) == ("td3-source", ["td3/source/seed3", "td3/source/seed4"],
                                                                 [3, 4])
    assert (lp.source.wall, lp.wall) == ("td3/source", "td3/adapt")
    assert plan.total_chunks == 2 * (4 + len(GROUPS) * 2 * 3) and plan.adapt_batches == 4


def test_one_line_and_one_switch_name_nothing_extra():
    plan = _plan([None], lines=("",), line_key=None)
    (lp,) = plan.lines
    job = lp.batches[0].switches[0]
    assert job.index == [0, 2] and lp.batches[0].sequence is None
    assert job.ids[0] == {"phase": "adapt", "run_index": 0, "method": "hard_switch", "seed": 0, "hparams": {}}
    assert job.names == ["hard_switch/seed0", "hard_switch/seed1"] and job.tag == "adapt0"
    assert (lp.source.tag, lp.source.wall, lp.wall, lp.source.ids[0]) == ("source", "source", "adapt",
                                                                          {"phase": "source", "seed": 3})
    assert plan.total_chunks == 4 + 2 * 3
