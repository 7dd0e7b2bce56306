"""Offline datasets: D4RL hdf5 and Minari files written here in their real formats, normalized scores.
Missing, corrupt and mismatched datasets (one error line through the CLI): tests/test_bad_input.py."""
import h5py
import numpy as np
import pytest

from lossmooth.offline import datasets as D
from lossmooth.offline import scores


def episodes(seed=0, lengths=(5, 7, 4), obs_dim=3, act_dim=2):
    """Episodes in Minari's layout: the first ends in a terminal state, the others by timeout."""
    rng = np.random.default_rng(seed)
    out = []
    for i, T in enumerate(lengths):
        last = np.zeros(T, bool)
        last[-1] = True
        out.append(dict(observations=rng.normal(size=(T + 1, obs_dim)).astype(np.float32),
                        actions=rng.uniform(-1, 1, (T, act_dim)).astype(np.float32),
                        rewards=rng.normal(size=T).astype(np.float32),
                        terminations=last & (i == 0), truncations=last & (i > 0)))
    return out


def d4rl_rows(eps):
    """The same episodes as D4RL rows (one per transition, next_observations alongside)."""
    cat = lambda k: np.concatenate([e[k] for e in eps])  # noqa: E731
    return dict(observations=np.concatenate([e["observations"][:-1] for e in eps]),
                next_observations=np.concatenate([e["observations"][1:] for e in eps]),
                actions=cat("actions"), rewards=cat("rewards"), terminals=cat("terminations"),
                timeouts=cat("truncations"))


def write_h5(path, rows, drop=()):
    with h5py.File(path, "w") as f:
        for k, v in rows.items():
            if k not in drop:
                f.create_dataset(k, data=v)


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    D.save_minari(episodes(), "lossmooth/probe-medium-v0", str(root), ref_scores=(-3.0, 5.0),
                  description="test", algorithm="test", metadata={"policy": "random"})
    return str(root)


def test_d4rl_file_and_minari_dataset_load_to_identical_arrays(tmp_path, minari_root):
    path = tmp_path / "probe_medium-v2.hdf5"
    write_h5(path, d4rl_rows(episodes()))
    a = D.load_d4rl(str(path))
    b = D.load_minari("lossmooth/probe-medium-v0", minari_root)
    assert len(a) == len(b) == 16
    for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert b.ref_scores == (-3.0, 5.0) and a.ref_scores is None
    np.testing.assert_allclose(b.episode_returns(), [e["rewards"].sum() for e in episodes()], rtol=1e-5)
    assert a.terminals.sum() == 1 and a.timeouts.sum() == 2
    # the same transitions from two file formats and names: one content hash; one changed reward: another
    assert a.content_hash() == b.content_hash() and len(a.content_hash()) == 64
    rewards = a.rewards.copy()
    rewards[3] += 1e-3
    assert D.transitions(a.observations, a.actions, rewards, a.next_observations, a.terminals,
                         a.timeouts).content_hash() != a.content_hash()


def test_d4rl_file_without_next_observations_is_converted_like_qlearning_dataset(tmp_path):
    rows = d4rl_rows(episodes())
    write_h5(tmp_path / "f.hdf5", rows, drop=("next_observations",))
    t = D.load_d4rl(str(tmp_path / "f.hdf5"))
    # rows cut by a timeout (their following row starts a new episode) and the last row are dropped
    keep = np.flatnonzero(~rows["timeouts"])
    keep = keep[keep < len(rows["rewards"]) - 1]
    np.testing.assert_array_equal(t.observations, rows["observations"][keep])
    np.testing.assert_array_equal(t.next_observations, rows["observations"][keep + 1])
    # within an episode the following row is the true next observation (a terminal row's next one
    # starts the next episode, as in D4RL; terminals do not bootstrap, so it is never used)
    np.testing.assert_array_equal(t.next_observations[:4], rows["next_observations"][:4])
    assert t.terminals[4] and not t.terminals[:4].any()


def test_replay_buffer_of_a_dataset_normalizes_states_and_keeps_terminals(minari_root):
    t = D.load_minari("lossmooth/probe-medium-v0", minari_root)
    mean, std = t.state_stats()
    buf = D.as_replay_buffer(t, mean, std)
    assert buf.size == len(t) and bool(buf.full)
    np.testing.assert_allclose(np.asarray(buf.data.obs), (t.observations - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(buf.data.obs).mean(0), 0.0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(buf.data.done), t.terminals)


def test_normalized_score_reproduces_d4rl_constants():
    ref = scores.d4rl_reference("hopper-medium-v2")
    assert ref == (-20.272305, 3234.3)
    np.testing.assert_allclose(scores.normalized([-20.272305, 3234.3, 1607.013848], ref), [0.0, 100.0, 50.0],
                               atol=1e-6)
    assert scores.d4rl_reference("halfcheetah_medium_expert-v2") == (-280.178953, 12135.0)
