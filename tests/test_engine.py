"""The loop engine on a toy problem (least squares) where every number can be checked."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.core import engine

X = jax.random.normal(jax.random.key(0), (64, 3))
W_TRUE = jnp.array([1.0, -2.0, 0.5])
DATA = {"x": X, "y": X @ W_TRUE}


def step_fn(state, hp, data):
    key = jax.random.fold_in(hp["key"], state["step"])
    idx = jax.random.randint(key, (8,), 0, 64)
    x, y = data["x"][idx], data["y"][idx]
    loss, g = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state["w"])
    return {"w": state["w"] - hp["lr"] * g, "step": state["step"] + 1}, {"loss": loss}


def eval_fn(state, hp, data):
    return {"err": jnp.sum((state["w"] - W_TRUE) ** 2)}


def init(n):
    state = {"w": jnp.zeros((n, 3)), "step": jnp.zeros((n,), jnp.int32)}
    hp = {"key": jnp.stack([jax.random.key_data(jax.random.key(i)) for i in range(n)]),
          "lr": jnp.linspace(0.01, 0.1, n)}
    return state, hp


@pytest.fixture(scope="module")
def chunk():
    return engine.make_chunk(step_fn, eval_fn, steps_per_eval=5, evals_per_chunk=2)


def test_chunks_return_per_run_per_eval_metrics_and_learn(chunk):
    state, hp = init(3)
    res = engine.run_loop(chunk, state, hp, DATA, n_chunks=4)
    assert res.metrics["err"].shape == (3, 8) and res.metrics["loss"].shape == (3, 8)
    assert np.all(res.metrics["err"][:, -1] < res.metrics["err"][:, 0])
    assert list(res.diverged_at) == [-1, -1, -1]
    assert np.all(np.asarray(res.state["step"]) == 40)


def test_each_run_in_the_batch_equals_the_run_alone(chunk):
    state, hp = init(3)
    batched = engine.run_loop(chunk, state, hp, DATA, n_chunks=2).metrics["err"]
    for i in range(3):
        s1, h1 = jax.tree.map(lambda x: x[i:i + 1], (state, hp))
        alone = engine.run_loop(chunk, s1, h1, DATA, n_chunks=2).metrics["err"][0]
        np.testing.assert_allclose(batched[i], alone, rtol=1e-6)


def test_saved_and_restored_state_continues_bit_identically(chunk, tmp_path):
    state, hp = init(2)
    full = engine.run_loop(chunk, state, hp, DATA, n_chunks=4)
    half = engine.run_loop(chunk, state, hp, DATA, n_chunks=2)
    engine.save_state(str(tmp_path / "ckpt"), half.state)
    restored = engine.restore_state(str(tmp_path / "ckpt"), half.state)
    rest = engine.run_loop(chunk, restored, hp, DATA, n_chunks=4, start_chunk=2,
                           metrics_so_far=half.metrics)
    for k in full.metrics:
        assert np.array_equal(full.metrics[k], rest.metrics[k])
    assert np.array_equal(full.state["w"], rest.state["w"])


def test_checkpoints_count_the_chunks_a_resumed_run_has_behind_it(chunk, tmp_path):
    """The progress a resumed run starts from: every tag's next chunk (a finished loop's all, a loop
    stopped after its second chunk two), none before any save."""
    state, hp = init(2)
    ckpt = engine.Checkpoints(str(tmp_path / "ck"), marker=lambda: {})
    assert ckpt.chunks_done() == 0
    engine.run_loop(chunk, state, hp, DATA, n_chunks=3, checkpoints=ckpt, tag="source")

    def stop_after_second(c, s, m):
        if c == 1:
            ckpt.stop_requested = True

    with pytest.raises(engine.Preempted):
        engine.run_loop(chunk, state, hp, DATA, n_chunks=4, callbacks=[stop_after_second], checkpoints=ckpt,
                        tag="adapt0")
    assert ckpt.chunks_done() == 3 + 2


def test_divergence_is_recorded_with_its_eval_index(chunk):
    state, hp = init(2)
    hp["lr"] = jnp.array([0.01, 50.0])  # the second run blows up
    res = engine.run_loop(chunk, state, hp, DATA, n_chunks=4)
    assert res.diverged_at[0] == -1 and res.diverged_at[1] >= 0


def test_padding_for_devices_repeats_the_last_run():
    tree = {"a": jnp.arange(3)}
    assert engine.padded_size(3, 2) == 4
    assert list(engine.pad_runs(tree, 3, 4)["a"]) == [0, 1, 2, 2]


SHARDED = textwrap.dedent("""
    import os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax, numpy as np
    sys.path.insert(0, os.path.dirname(sys.argv[1]))
    from test_engine import step_fn, eval_fn, init, DATA
    from lossmooth.core import engine
    assert len(jax.devices()) == 2, jax.devices()
    chunk = engine.make_chunk(step_fn, eval_fn, 5, 2)
    state, hp = init(3)
    n = engine.padded_size(3, 2)
    mesh = engine.run_mesh()
    s, h = engine.shard_runs(engine.pad_runs((state, hp), 3, n), mesh)
    sharded = engine.run_loop(chunk, s, h, DATA, 2)
    assert len(sharded.state["w"].sharding.device_set) == 2
    plain = engine.run_loop(chunk, state, hp, DATA, 2)
    print(json.dumps({"sharded": sharded.metrics["err"][:3].tolist(), "plain": plain.metrics["err"].tolist()}))
""")


def test_sharded_and_unsharded_runs_give_the_same_metrics(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    out = subprocess.run([sys.executable, str(script), os.path.abspath(__file__)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    r = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(r["sharded"], r["plain"], rtol=1e-6)


def test_dense_first_chunk_evaluates_after_every_update_and_changes_nothing_else(chunk, tmp_path):
    """The dense program's curves equal an evaluation after each single update (a chunk of one-step
    intervals, brute force); its other metrics and the final state equal the plain program's, bit for
    bit; a checkpoint after chunk 0 keeps the dense curves."""
    state, hp = init(3)
    dense = engine.make_chunk(step_fn, eval_fn, steps_per_eval=5, evals_per_chunk=2,
                              dense=(1, lambda s, h, d: {"err": eval_fn(s, h, d)["err"], "w0": s["w"][0]}))
    plain = engine.run_loop(chunk, state, hp, DATA, n_chunks=3)
    ckpt = engine.Checkpoints(str(tmp_path / "ck"), marker=lambda: {})
    got = engine.run_loop(chunk, state, hp, DATA, n_chunks=3, first=dense, checkpoints=ckpt, tag="d")
    for k in plain.metrics:
        assert np.array_equal(plain.metrics[k], got.metrics[k])
    assert np.array_equal(plain.state["w"], got.state["w"])
    one_step = engine.make_chunk(step_fn, eval_fn, steps_per_eval=1, evals_per_chunk=5)
    brute = engine.run_loop(one_step, state, hp, DATA, n_chunks=1).metrics["err"]
    curve = got.extra["dense"]["err"]
    assert curve.shape == (3, 6)  # the switch, then updates 1..5
    np.testing.assert_allclose(curve[:, 0], np.asarray(jax.vmap(eval_fn, (0, 0, None))(state, hp, DATA)["err"]))
    np.testing.assert_allclose(curve[:, 1:], brute, rtol=1e-6)
    assert curve[:, 5].tolist() == got.metrics["err"][:, 0].tolist()  # update 5 is the first regular evaluation
    # a finished loop resumes from its last checkpoint with the dense curves it had
    again = engine.run_loop(chunk, state, hp, DATA, n_chunks=3, first=dense, checkpoints=ckpt, tag="d")
    assert np.array_equal(again.extra["dense"]["err"], curve)
    with pytest.raises(ValueError, match="dense evaluation covers"):
        engine.make_chunk(step_fn, eval_fn, 5, 2, dense=(3, eval_fn))


def test_a_one_run_program_is_the_per_run_program_on_that_run(chunk):
    """``one_run=True`` runs the per-run function on the single run (no batch of one): the same state
    and metrics as the vmapped program, within float rounding, and a batch of two is refused."""
    state, hp = init(1)
    single = engine.make_chunk(step_fn, eval_fn, steps_per_eval=5, evals_per_chunk=2, one_run=True)
    s1, m1 = single(state, hp, DATA)
    s0, m0 = chunk(state, hp, DATA)
    assert jax.tree.map(jnp.shape, s1) == jax.tree.map(jnp.shape, s0)
    for a, b in zip(jax.tree.leaves((s1, m1)), jax.tree.leaves((s0, m0))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert float(m1["err"][0, -1]) < float(m1["err"][0, 0])  # it trained
    with pytest.raises(ValueError, match="one-run program got 2 runs"):
        single(*init(2), DATA)
