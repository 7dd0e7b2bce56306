"""The one training-loop engine: ``jit(vmap(train))`` over a batch of runs, run as ``lax.scan`` chunks.

A *run* is one (method, swept numbers, seed) combination. A setting supplies, for a single run,

    step_fn(state, hp, data) -> (state, train_metrics)      one optimizer update
    eval_fn(state, hp, data) -> eval_metrics                 evaluation at the current state

where ``state`` and ``hp`` carry a leading run axis and ``data`` (arrays shared by every run: the
datasets) does not; data is an argument, never a closed-over constant, so it is not baked into the
compiled program. The engine builds ``chunk(state, hp, data)``: ``evals_per_chunk`` x (``steps_per_eval`` steps, then
one evaluation), vmapped over the leading run axis (named ``runs`` so collectives such as
:func:`lossmooth.core.objective.source_needed` can reduce over it), jit-compiled once, with the run
axis sharded over the visible devices. The host loop runs chunks and does host work only between
them: progress, loggers, a divergence check, checkpoints. The state between chunks is exactly what a
checkpoint holds, so a run restored from one continues bit-identically.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lossmooth.core import sharding, threefry  # noqa: F401  (threefry: CPU lowering, same bits)
from lossmooth.errors import ConfigError
from lossmooth.core.objective import RUN_AXIS


def enable_compilation_cache(cache_dir: str | None) -> None:
    """Turn on JAX's persistent compilation cache (a second run skips most XLA compile time)."""
    if not cache_dir:
        return
    cache_dir = os.path.expanduser(cache_dir)
    os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# ----------------------------------------------------------------------------- run batches


def stack_runs(items: list) -> object:
    """Stack a list of same-structure pytrees into one pytree with a leading run axis."""
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *items)


def run_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (RUN_AXIS,))


# Runs per block of a compiled batch on one device. A batch of n runs is padded to a multiple of LANES
# and its programs run it block by block (:func:`run_vmap`): every block is the same LANES-wide program,
# so a run's numbers are the same, bit for bit, whatever other runs share its batch (XLA's CPU kernels
# round a batch of 8 runs and one of 16 differently in the last bits). A batch is at least two blocks:
# XLA compiles a one-block batch as straight-line code, fused otherwise than the loop over blocks (TD3's
# target-network update rounds differently there), so a run alone would not match the same run beside
# others. 8: a 16-run default is two blocks, and a 2-run job pays at most 8x (benchmarks/lanes.py).
LANES = 8


def padded_size(n_runs: int, n_devices: int, lanes: int = 1) -> int:
    """The padded run count: a multiple of the device count over several devices; on one, a multiple
    of ``lanes`` and, where ``lanes > 1``, at least two blocks of them (see :data:`LANES`)."""
    if n_devices > 1:
        return -(-n_runs // n_devices) * n_devices
    unit = max(1, lanes)
    return max(-(-n_runs // unit), 2 if unit > 1 else 1) * unit


def pad_runs(tree, n_runs: int, target: int):
    """Repeat the last run so the run axis divides evenly over devices (padding is dropped later by
    :func:`unpad_runs`)."""
    if target == n_runs:
        return tree
    return _padded(tree, target - n_runs)


def unpad_runs(tree, n_runs: int):
    """The first ``n_runs`` runs of every leaf: the padding of :func:`pad_runs` dropped (the tree itself
    where nothing was padded, as ``x[:n]`` of a whole axis gives ``x``)."""
    if all(x.shape[0] == n_runs for x in jax.tree.leaves(tree)):
        return tree
    return _first(tree, n_runs)


# Each of these copies a whole tree in one compiled program: leaf by leaf, every leaf shape compiled its
# own slice, repeat and concatenation (dozens of small XLA compilations per run); the bytes are the same.
@functools.partial(jax.jit, static_argnums=1)
def _padded(tree, extra: int):
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], extra, 0)]), tree)


@functools.partial(jax.jit, static_argnums=1)
def _first(tree, n_runs: int):
    return jax.tree.map(lambda x: x[:n_runs], tree)


def place_runs(tree, n_runs: int, mesh: Mesh | None, lanes: int = 1):
    """:func:`pad_runs` to a multiple of the mesh's size (one device: of ``lanes``), then
    :func:`shard_runs`: a batch of runs as a compiled program takes it."""
    tree = pad_runs(tree, n_runs, padded_size(n_runs, 1 if mesh is None else mesh.size, lanes))
    return shard_runs(tree, mesh)


def shard_runs(tree, mesh: Mesh | None):
    """Place every leaf with its leading (run) axis split over the mesh; unsharded if mesh is None."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P(RUN_AXIS))
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def to_host(tree):
    """Numpy copies of a tree's arrays. An array spread over several processes' devices (a run over
    several hosts, :mod:`lossmooth.runner.distributed`) is gathered from all of them, so every
    process must call this at the same point."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree.map(one, tree)


# ----------------------------------------------------------------------------- compiled programs


DENSE = "dense/"  # the prefix of a dense evaluation's metrics in a chunk's output


def make_chunk(step_fn: Callable, eval_fn: Callable, steps_per_eval: int, evals_per_chunk: int,
               dense: tuple[int, Callable] | None = None, donate: bool | None = None, one_run: bool = False,
               lanes: int = LANES):
    """``jit(vmap(chunk))``: per run, ``evals_per_chunk`` x (scan of ``steps_per_eval`` steps + eval).

    Returns ``(state, metrics)`` where each metric has shape ``[runs, evals_per_chunk]``; the train
    metrics are averaged over the steps of each interval (``lam`` is the last step's).

    ``dense = (d, dense_eval)``: the program for the first chunk of an adaptation with dense
    evaluation where the transient lives: the same updates in the same order, and besides the
    evaluations above ``dense_eval`` after every one of the first ``d * steps_per_eval`` updates and
    before the first, returned as ``dense/<name>`` of shape ``[runs, d * steps_per_eval + 1]`` (the
    switch first). The updates do not depend on the evaluations, so the chunk's other metrics and its
    final state are those of the program without ``dense`` (bit for bit where each device holds whole
    runs; a run split over devices, :mod:`.sharding`, may be partitioned differently in the two
    programs, and agrees within float rounding).
    """

    def interval(state, hp, data, dense_eval=None):
        """``steps_per_eval`` updates, then one evaluation (and ``dense_eval`` after every update)."""
        def one_step(s, _):
            s, train = step_fn(s, hp, data)
            return s, (train, {} if dense_eval is None else dense_eval(s, hp, data))

        state, (train, seen) = jax.lax.scan(one_step, state, None, length=steps_per_eval)
        train = {k: (v[-1] if k == "lam" else jnp.mean(v)) for k, v in train.items()}
        return state, ({**train, **eval_fn(state, hp, data)}, seen)

    def chunk(state, hp, data):
        state, (metrics, _) = jax.lax.scan(lambda s, _: interval(s, hp, data), state, None,
                                           length=evals_per_chunk)
        return state, metrics

    program = chunk
    if dense is not None:
        d, dense_eval = dense
        if not 1 <= d <= evals_per_chunk:
            raise ValueError(f"dense evaluation covers 1..{evals_per_chunk} evaluation intervals, got {d}")

        def program(state, hp, data):
            at_switch = dense_eval(state, hp, data)
            state, (metrics, seen) = jax.lax.scan(lambda s, _: interval(s, hp, data, dense_eval), state, None,
                                                  length=d)
            if d < evals_per_chunk:
                state, (rest, _) = jax.lax.scan(lambda s, _: interval(s, hp, data), state, None,
                                                length=evals_per_chunk - d)
                metrics = jax.tree.map(lambda x, y: jnp.concatenate([x, y]), metrics, rest)
            curves = {DENSE + k: jnp.concatenate([at_switch[k][None], v.reshape(-1)]) for k, v in seen.items()}
            return state, {**metrics, **curves}

    def held(state, hp, data):
        # a run sharded over devices (lossmooth.core.sharding) returns its state sharded as it came
        state, metrics = program(sharding.keep_sharded(state), hp, data)
        return sharding.keep_sharded(state), metrics

    # donating the state lets the program write the new state over the old (one copy of the state
    # less). Accelerators always do; on CPU (whose backend reuses donated buffers too, as of JAX 0.10)
    # a setting asks for it where no state it keeps shares buffers with a chunk's input (the LM; a
    # memory plan compiles for an accelerator on the CPU)
    if donate is None:
        donate = jax.default_backend() != "cpu"
    return jax.jit(run_vmap(held, one_run, lanes), donate_argnums=(0,) if donate else ())


def run_vmap(fn: Callable, one_run: bool = False, lanes: int = 1):
    """``vmap`` of a per-run ``fn(state, hp, data)`` over the run axis: named ``runs`` for collectives,
    and laid on the mesh's ``runs`` axis where a program annotates placements (:mod:`.sharding`).

    ``one_run``: a setting whose every batch holds exactly one run (the LM) gets ``fn`` itself on that
    run, its run axis taken off and put back, instead of a batch of one. XLA's CPU compiler turns a
    batch of one into batched matrix products whose operands it copies to other layouts: for
    SmolLM2-135M's update, 0.9 GiB more temporaries (2.61 vs 1.72 GiB). Collectives over ``runs``
    then find no such axis and reduce over the one run (:func:`lossmooth.core.objective.source_needed`).

    ``lanes``: on one device, a batch whose size is a multiple of ``lanes`` runs as ``lax.map`` over
    blocks of ``lanes`` runs, each block ``vmap`` of ``fn``: one program for every block, whatever the
    batch's size, so each run's numbers do not depend on its neighbours (:data:`LANES`; callers pad a
    batch to two blocks or more, :func:`padded_size`, as a one-block batch compiles otherwise). Collectives
    over ``runs`` reduce within a block. Over several devices, or for another batch size, plain ``vmap``.
    """
    vm = jax.vmap(fn, in_axes=(0, 0, None), axis_name=RUN_AXIS, spmd_axis_name=RUN_AXIS)
    if not one_run:
        if lanes <= 1:
            return vm

        def blocked(state, hp, data):
            n = jax.tree.leaves(state)[0].shape[0]
            if n % lanes or jax.device_count() > 1:
                return vm(state, hp, data)
            blocks = lambda x: x.reshape((n // lanes, lanes) + x.shape[1:])  # noqa: E731
            out = jax.lax.map(lambda b: vm(b[0], b[1], data), (jax.tree.map(blocks, state), jax.tree.map(blocks, hp)))
            return jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), out)

        return blocked

    def single(state, hp, data):
        n = jax.tree.leaves(state)[0].shape[0]
        if n != 1:
            raise ValueError(f"a one-run program got {n} runs")
        out = fn(jax.tree.map(lambda x: x[0], state), jax.tree.map(lambda x: x[0], hp), data)
        return jax.tree.map(lambda x: x[None], out)

    return single


def in_lanes(fn: Callable) -> Callable:
    """``call(state, hp, data)``: a per-run ``fn(state, hp, data)`` jit-compiled over a batch of runs as
    the engine's programs are, for a caller outside a chunk (e.g. a host-stepped loop): the batch padded
    to :func:`padded_size` with :data:`LANES` (the last run repeated), run block by block by
    :func:`run_vmap`, and the padding dropped from the result; so a run's numbers do not depend on the
    runs beside it."""
    prog = jax.jit(run_vmap(fn, lanes=LANES))

    def call(state, hp, data):
        n = int(jax.tree.leaves(state)[0].shape[0])
        size = padded_size(n, jax.device_count(), LANES)
        return unpad_runs(prog(pad_runs(state, n, size), pad_runs(hp, n, size), data), n)

    return call


def make_eval(eval_fn: Callable, one_run: bool = False, lanes: int = LANES):
    """``jit(vmap(eval_fn))`` for an evaluation outside the chunks (e.g. at the switch); ``one_run``
    and ``lanes``: see :func:`run_vmap`."""
    return jax.jit(run_vmap(lambda state, hp, data: eval_fn(sharding.keep_sharded(state), hp, data), one_run,
                            lanes))


def compile_ahead(fn, *args):
    """Compile the jitted ``fn`` for ``args`` in a background thread, so that its first call loads the
    program from the persistent compilation cache instead of compiling it then. XLA compiles one
    program per thread: a program needed later compiles on the second core while the current one
    compiles or runs. Without the persistent cache (``cache_dir=null``) this does nothing, since the
    result could not be reused. Returns the thread (or None)."""
    import threading

    if not jax.config.jax_compilation_cache_dir or not hasattr(fn, "lower"):  # (a host loop: nothing to compile)
        return None
    # not a daemon: the interpreter joins it at exit, instead of cancelling a thread inside XLA's compiler
    # (which aborts the process: "terminate called ... FATAL: exception not rethrown")
    t = threading.Thread(target=lambda: fn.lower(*args).compile(), daemon=False)
    t.start()
    return t


def compile_queue(items):
    """:func:`compile_ahead` for several ``(jitted, args)`` pairs, one after another in one thread
    (programs of a later phase compile on the spare core while the current phase runs)."""
    import threading

    items = [(fn, args) for fn, args in items if hasattr(fn, "lower")]
    if not jax.config.jax_compilation_cache_dir or not items:
        return None

    def work():
        for fn, args in items:
            fn.lower(*args).compile()

    t = threading.Thread(target=work, daemon=False)  # joined at exit (see compile_ahead)
    t.start()
    return t


# ----------------------------------------------------------------------------- host loop


@dataclass
class LoopResult:
    state: object
    metrics: dict  # name -> np.ndarray [runs, n_evals]
    diverged_at: np.ndarray  # [runs] first eval index with a non-finite metric, -1 if none
    chunks_done: int = 0
    extra: dict = field(default_factory=dict)


def run_loop(chunk_fn, state, hp, data, n_chunks: int, callbacks=(), start_chunk: int = 0,
             metrics_so_far: dict | None = None, later: tuple[int, Callable] | None = None,
             checkpoints: "Checkpoints | None" = None, tag: str = "loop", save: bool = True,
             first: Callable | None = None) -> LoopResult:
    """Run ``n_chunks`` compiled chunks; after each, call ``cb(chunk_index, state, chunk_metrics)``.

    ``first`` runs chunk 0 instead (a program with dense evaluation, :func:`make_chunk`): its
    ``dense/*`` curves go to ``extra["dense"]`` (name -> ``[runs, evaluations]``), not to the callbacks.

    ``later = (first, fn)`` runs chunks ``first, first+1, ...`` with ``fn`` instead: a program
    compiled for a phase the host knows has begun (e.g. every run past its ramp, source-free).
    Host work happens only here, between chunks. A run whose metrics turn non-finite is recorded in
    ``diverged_at`` (its numbers keep flowing so the batch's shapes stay static).

    ``checkpoints``: this loop (``tag``) resumes from its last checkpoint there (the state, the
    metrics so far and the next chunk; ``state`` only gives the structure), and saves one after
    chunks (see :class:`Checkpoints`); a stop request (SIGTERM, SIGINT) saves and raises
    :class:`Preempted`. ``save=False`` (a loop whose state is not all in JAX) neither resumes nor saves;
    a stop request still stops it after the current chunk.
    """
    if checkpoints is not None and save:
        saved = checkpoints.load(tag, state)
        if saved is not None:
            start_chunk, state, metrics_so_far = saved
    collected = {k: [v] for k, v in (metrics_so_far or {}).items()}
    for c in range(start_chunk, n_chunks):
        fn = later[1] if later is not None and c >= later[0] else chunk_fn
        state, m = (first if first is not None and c == 0 else fn)(state, hp, data)
        m = to_host(m)
        for k, v in m.items():
            collected.setdefault(k, []).append(np.asarray(v))
        m = {k: v for k, v in m.items() if not k.startswith(DENSE)}
        for cb in callbacks:
            cb(c, state, m)
        if checkpoints is not None and save:
            checkpoints.after_chunk(tag, c, n_chunks, state, collected)
        elif checkpoints is not None and checkpoints.stop_requested:
            raise Preempted(checkpoints.root, checkpoints.stop_requested)
    metrics = {k: np.concatenate(v, axis=1) for k, v in collected.items() if not k.startswith(DENSE)}
    dense = {k[len(DENSE):]: np.concatenate(v, axis=1) for k, v in collected.items() if k.startswith(DENSE)}
    return LoopResult(state=state, metrics=metrics, diverged_at=first_nonfinite(metrics),
                      chunks_done=n_chunks, extra={"dense": dense} if dense else {})


def first_nonfinite(metrics: dict) -> np.ndarray:
    """Per run, the first eval index where any metric is NaN/inf (-1 where none is)."""
    if not metrics:
        return np.zeros((0,), np.int64)
    bad = np.zeros_like(next(iter(metrics.values())), dtype=bool)
    for v in metrics.values():
        bad |= ~np.isfinite(v)
    return np.where(bad.any(axis=1), bad.argmax(axis=1), -1)


# ----------------------------------------------------------------------------- checkpoints


class Preempted(Exception):
    """A stop was requested (SIGTERM by a cluster, SIGINT by Ctrl-C); the run's checkpoints are saved.
    ``args``: the checkpoint folder and the signal number."""

    @property
    def signal(self) -> int:
        import signal

        return self.args[1] if len(self.args) > 1 and self.args[1] else signal.SIGTERM


class CheckpointSpace(ConfigError):
    """The disk under a run's checkpoints has too little free space for the next save: one line naming
    the folder and the space needed. The run directory stays (``keep_run``): the same command resumes
    from the last whole save once space is freed."""

    keep_run = True

    def __init__(self, root: str, need: int, free: int):
        super().__init__(f"checkpoints: no space left for a checkpoint in {root}: it needs about "
                         f"{need / 2**20:.1f} MiB free, {free / 2**20:.1f} MiB are; free space, then run the same "
                         "command to resume")


def checkpoint_bytes(state, metrics: dict) -> int:
    """The space a checkpoint of ``state`` and ``metrics`` takes, at least: the bytes of their arrays
    (orbax adds its metadata on top, which the 1 MiB margin covers for small states)."""
    leaves = jax.tree.leaves(state) + list(metrics.values())
    return sum(int(np.prod(np.shape(x))) * np.dtype(getattr(x, "dtype", np.float32)).itemsize for x in leaves) + 2**20


def _no_space(e: BaseException) -> bool:
    """``e`` (or an exception it was raised from, as orbax wraps them) is a full disk or quota."""
    import errno

    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False


class Checkpoints:
    """A run's checkpoints at chunk boundaries, under ``root`` (``<run dir>/checkpoints``): per loop
    tag the state (orbax), the metrics so far and the next chunk, and ``marker()``, what the runner
    records with them (the number of metric rows written, so a resumed run drops the rows written
    after the checkpoint). A save is written beside the previous one and swapped in by renames, so
    a kill at any moment leaves a whole checkpoint. Saves happen at least every ``every_s`` seconds
    (0: after every chunk) and always after a loop's last chunk (a finished phase is never redone)."""

    def __init__(self, root: str, marker: Callable[[], dict], every_s: float = 0.0):
        self.root, self.marker, self.every_s = root, marker, every_s
        self.stop_requested = False
        self._last = 0.0

    def _dirs(self, tag):
        d = os.path.join(self.root, tag)
        return d, d + ".old", d + ".new"

    def _pick(self, tag):
        """The newest whole save of ``tag``: a finished ``.new`` (a kill before its renames), then
        the current one, then ``.old`` (a kill between the renames); None if there is none."""
        d, old, new = self._dirs(tag)
        return next((x for x in (new, d, old) if os.path.exists(os.path.join(x, "done.json"))), None)

    def load(self, tag: str, like):
        """(next chunk, state, metrics so far) of ``tag``'s checkpoint, or None."""
        import json

        d = self._pick(tag)
        if d is None:
            return None
        with open(os.path.join(d, "done.json")) as f:
            info = json.load(f)
        with np.load(os.path.join(d, "metrics.npz")) as z:
            metrics = {k: z[k] for k in z.files}
        return info["next_chunk"], restore_state(os.path.join(d, "state"), like), metrics

    def chunks_done(self) -> int:
        """Chunks every tag's checkpoint has behind it (a resumed run's progress so far)."""
        return sum(int(info["next_chunk"]) for info in self._saved())

    def markers(self) -> list[dict]:
        """The markers of every tag's checkpoint."""
        return [info["marker"] for info in self._saved()]

    def _saved(self) -> list[dict]:
        """Every tag's newest whole save's ``done.json`` (next chunk, marker), in the tags' order."""
        import json

        if not os.path.isdir(self.root):
            return []
        tags = {n.removesuffix(".old").removesuffix(".new") for n in os.listdir(self.root)}
        out = []
        for tag in sorted(tags):
            d = self._pick(tag)
            if d is not None:
                with open(os.path.join(d, "done.json")) as f:
                    out.append(json.load(f))
        return out

    def after_chunk(self, tag: str, c: int, n_chunks: int, state, collected: dict) -> None:
        import time

        due = c == n_chunks - 1 or self.stop_requested or time.time() - self._last >= self.every_s
        if due:
            self.save(tag, c + 1, state, {k: np.concatenate(v, axis=1) for k, v in collected.items()})
        if self.stop_requested:
            raise Preempted(self.root, self.stop_requested)

    def save(self, tag: str, next_chunk: int, state, metrics: dict) -> None:
        import json
        import shutil
        import time

        d, old, new = self._dirs(tag)
        if self._pick(tag) == new:  # a whole save a kill left before its renames: make it current
            shutil.rmtree(d, ignore_errors=True)
            os.rename(new, d)
        shutil.rmtree(new, ignore_errors=True)
        need = checkpoint_bytes(state, metrics)
        os.makedirs(self.root, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if free < need:  # refused before orbax starts: its threads would each print a traceback
            raise CheckpointSpace(self.root, need, free)
        try:
            os.makedirs(new)
            save_state(os.path.join(new, "state"), state)
            np.savez(os.path.join(new, "metrics.npz"), **metrics)
            with open(os.path.join(new, "done.json"), "w") as f:  # last: marks the save whole
                json.dump({"next_chunk": next_chunk, "marker": self.marker()}, f)
        except BaseException as e:  # nothing half-written stays beside the last whole save
            shutil.rmtree(new, ignore_errors=True)
            if _no_space(e):
                raise CheckpointSpace(self.root, need, shutil.disk_usage(self.root).free) from None
            raise
        if os.path.exists(d):
            shutil.rmtree(old, ignore_errors=True)
            os.rename(d, old)
        os.rename(new, d)
        shutil.rmtree(old, ignore_errors=True)
        self._last = time.time()


def save_state(path: str, state) -> None:
    """Save a state pytree (orbax); the directory appears whole or not at all.

    With several processes (:mod:`lossmooth.runner.distributed`) each process writes its own copy
    of the whole state, gathered to its host (:func:`to_host`), as one ``.npz`` of the tree's leaves
    in its own folder: orbax's multi-process machinery (shared directories, barriers) is not wanted
    there, and its asynchronous directory creation raced in a two-process test."""
    path = os.path.abspath(path)
    if jax.process_count() > 1:
        os.makedirs(path)
        leaves = jax.tree.leaves(to_host(state))
        np.savez(os.path.join(path, "leaves.npz"), *leaves)
        return
    import orbax.checkpoint as ocp

    # the arrays themselves, not jax.device_get's numpy views: orbax copies numpy input whole before
    # writing it (measured: a 1.6 GB state peaked 1.6 GB above rest that way, at rest this way), which
    # for an LM run added a second copy of the weights and AdamW moments between two chunks
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, state, force=True)


def restore_state(path: str, like):
    """Restore a state saved by :func:`save_state` into the structure (and shardings) of ``like``."""
    if jax.process_count() > 1:  # this process's copy, placed as ``like`` is placed
        with np.load(os.path.join(os.path.abspath(path), "leaves.npz")) as z:
            leaves = [z[f"arr_{i}"] for i in range(len(z.files))]
        template, treedef = jax.tree.flatten(like)
        return jax.tree.unflatten(treedef, [jax.device_put(x, lk.sharding) for x, lk in zip(leaves, template)])
    import orbax.checkpoint as ocp

    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with ocp.StandardCheckpointer() as ckpt:
        return ckpt.restore(os.path.abspath(path), abstract)
