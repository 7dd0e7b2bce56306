"""Setting 1: controlled supervised shifts (covariate and label shifts on image classification).

Protocol (per seed, paired across methods):

1. Source phase: train a classifier on the source distribution (cross-entropy, ``source_steps``
   updates), vmapped over seeds.
2. Adaptation: from that same source model, every method trains on the shifted target
   distribution for ``adapt_steps`` updates with the smoothed objective

       L_t = lam_t * CE(theta; target batch) + (1 - lam_t) * CE(theta; replayed source batch)

   The target and source batches are drawn independently; their indices depend only on the seed
   and the step, so every method sees the same data order. All (method, swept numbers, seed) runs
   that share a compiled structure run as one ``jit(vmap(...))`` batch.

Metrics at every evaluation: target and source accuracy and loss (accuracy is weighted by each
domain's class prior, so label-prior shifts are measured on their own distribution), lam and both
training losses. Summaries: :mod:`lossmooth.results.summaries`.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lossmooth.core import engine
from lossmooth.core.objective import Method, kl_to_anchor, l2_to_anchor, smoothed_loss, source_needed
from lossmooth.core.schedules import Schedule
from lossmooth.data import domains, images, shifts
from lossmooth.errors import ConfigError
from lossmooth.settings.common import _float, _int, parse_methods
from lossmooth.settings import common
from lossmooth.models import classifiers

SWEEPABLE = ("T", "lam0", "value", "reg_coef", "lr")
OPTIMIZERS = ("adam", "sgd")


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Spec:
    """Validated plain values of one supervised run (built from the Hydra config)."""

    num_seeds: int
    seed: int
    data_name: str
    data_dir: str | None
    model_name: str
    model_kwargs: dict
    shift: str
    severity: float
    methods: dict  # name -> Method (plain numbers)
    sweep: dict  # name -> list of values
    source_steps: int
    adapt_steps: int
    target_batch: int
    source_batch: int
    replay_pool: int
    steps_per_eval: int
    evals_per_chunk: int
    source_evals_per_chunk: int
    eval_size: int
    gap_window: int
    optimizer: str
    source_lr: float
    lr: float
    split_seed: int
    train_fraction_source: float
    domains: dict | None = None  # a domain pair: kind, source, target, size (px), options


def parse(cfg) -> Spec:
    """Validate the composed config; every problem is one line naming the field and the fix."""
    s = cfg["setting"]
    num_seeds = _int(cfg, "num_seeds", 1)
    seed = _int(cfg, "seed", 0)
    data = cfg["data"]
    if data.get("name") not in images.DATASETS + domains.KINDS:
        raise ConfigError(f"data.name: unknown dataset '{data.get('name')}'; choose one of "
                          f"{', '.join(images.DATASETS + domains.KINDS)}")
    pair = None
    if data["name"] in domains.KINDS:
        pair = {"kind": data["name"], "source": data.get("source_domain"), "target": data.get("target_domain"),
                "size": data.get("image_size"),
                "options": {k: v for k, v in data.items()
                            if k not in ("name", "data_dir", "source_domain", "target_domain", "image_size")}}
        domains.validate(pair["kind"], pair["source"], pair["target"], pair["size"])
        if pair["size"] < classifiers.min_image_size(cfg["model"].get("name")):
            raise ConfigError(f"data.image_size: {pair['size']} px is too small for {cfg['model'].get('name')} (at "
                              f"least {classifiers.min_image_size(cfg['model'].get('name'))} px, its total stride); "
                              "raise it")
    model = dict(cfg["model"])
    model_name = model.pop("name", None)
    if model_name not in classifiers.MODELS:
        raise ConfigError(f"model.name: unknown model '{model_name}'; choose one of {', '.join(classifiers.MODELS)}")
    shift = cfg["shift"]
    shifts.validate(shift.get("name"), shift.get("severity", 0.0))
    methods = parse_methods(cfg.get("method"), allow_probe=True)
    probing = [n for n, m in methods.items() if float(m.probe_steps) > 0]
    if probing and model_name not in classifiers.HEADED:
        raise ConfigError(f"method.{probing[0]}: LP-FT needs a model with a separate classifier head "
                          f"({', '.join(classifiers.HEADED)}), not '{model_name}'; pick one with model=...")
    sweep = {k: list(v) for k, v in (cfg.get("sweep") or {}).items()}
    for k, vals in sweep.items():
        if k not in SWEEPABLE:
            raise ConfigError(f"sweep.{k}: not sweepable; sweepable numbers are {', '.join(SWEEPABLE)}")
        if not vals:
            raise ConfigError(f"sweep.{k}: empty list; give at least one value or drop the key")
    opt = s.get("optimizer", "adam")
    if opt not in OPTIMIZERS:
        raise ConfigError(f"setting.optimizer: unknown optimizer '{opt}'; choose one of {', '.join(OPTIMIZERS)}")
    f = lambda k: f"setting.{k}"  # noqa: E731
    spec = Spec(
        num_seeds=num_seeds, seed=seed, data_name=data["name"], data_dir=data.get("data_dir"),
        model_name=model_name, model_kwargs=model, shift=shift["name"],
        severity=float(shift.get("severity", 0.0)), methods=methods, sweep=sweep,
        source_steps=_int(s, "source_steps", 0, f("source_steps")),
        adapt_steps=_int(s, "adapt_steps", 1, f("adapt_steps")),
        target_batch=_int(s, "target_batch", 1, f("target_batch")),
        source_batch=_int(s, "source_batch", 1, f("source_batch")),
        replay_pool=_int(s, "replay_pool", 1, f("replay_pool")),
        steps_per_eval=_int(s, "steps_per_eval", 1, f("steps_per_eval")),
        evals_per_chunk=_int(s, "evals_per_chunk", 1, f("evals_per_chunk")),
        source_evals_per_chunk=_int(s, "source_evals_per_chunk", 1, f("source_evals_per_chunk")),
        eval_size=_int(s, "eval_size", 1, f("eval_size")),
        gap_window=_int(s, "gap_window", 1, f("gap_window")),
        optimizer=opt,
        source_lr=_float(s, "source_lr", 0.0, None, f("source_lr"), lo_open=True),
        lr=_float(s, "lr", 0.0, None, f("lr"), lo_open=True),
        split_seed=_int(s, "split_seed", 0, f("split_seed")),
        train_fraction_source=_float(s, "train_fraction_source", 0.0, 1.0, f("train_fraction_source"), lo_open=True),
        domains=pair,
    )
    if spec.source_batch > spec.replay_pool:
        raise ConfigError(f"setting.source_batch: {spec.source_batch} is larger than the replay pool "
                          f"(setting.replay_pool={spec.replay_pool}); lower source_batch or raise replay_pool")
    for name, per_chunk in (("source_steps", "source_evals_per_chunk"), ("adapt_steps", "evals_per_chunk")):
        n, k = getattr(spec, name), getattr(spec, per_chunk)
        if n % (spec.steps_per_eval * k):
            raise ConfigError(f"setting.{name}: {n} is not a multiple of setting.steps_per_eval x "
                              f"setting.{per_chunk} = {spec.steps_per_eval * k}; make it one")
    for k, vals in sweep.items():
        for v in vals:
            if k == "T":
                Schedule.make("linear", T=v, field="sweep")
            elif k in ("lam0", "value"):
                Schedule.make("linear", **{k: v}, field="sweep")
            elif not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or (k == "lr" and v == 0):
                raise ConfigError(f"sweep.{k}: bad value {v!r}; use positive numbers")
    return spec


# ----------------------------------------------------------------------------- data


@struct.dataclass
class Data:
    """Device arrays shared by every run (uint8 images; float conversion happens per batch)."""

    source_x: jnp.ndarray
    source_y: jnp.ndarray
    replay_x: jnp.ndarray
    replay_y: jnp.ndarray
    target_x: jnp.ndarray
    target_y: jnp.ndarray
    source_test_x: jnp.ndarray
    source_test_y: jnp.ndarray
    source_test_w: jnp.ndarray
    target_test_x: jnp.ndarray
    target_test_y: jnp.ndarray
    target_test_w: jnp.ndarray


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _eval_weights(y: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """w_i = prior[y_i] / count[y_i]: sum_i w_i correct_i is the prior-weighted per-class accuracy."""
    counts = np.bincount(y, minlength=len(prior)).astype(np.float64)
    w = prior[y] / np.maximum(counts[y], 1.0)
    return (w / w.sum()).astype(np.float32)


def build_data(spec: Spec) -> tuple[Data, dict]:
    """Split train into disjoint source / target pools (or, for a domain pair, take each domain's
    train set), apply the shift, and put arrays on device."""
    rng = np.random.default_rng(spec.split_seed)
    if spec.domains is not None:
        d = spec.domains
        src, tgt = domains.load_pair(d["kind"], d["source"], d["target"], d["size"], spec.data_dir,
                                     spec.split_seed, **d["options"])
        raw = src
        src_idx, tgt_idx = np.arange(len(src.y_train)), np.arange(len(tgt.y_train))
    else:
        raw = tgt = images.load(spec.data_name, spec.data_dir)
        perm = rng.permutation(len(raw.y_train))
        n_src = int(round(spec.train_fraction_source * len(perm)))
        src_idx, tgt_idx = perm[:n_src], perm[n_src:]
    k = raw.num_classes
    p_src, p_tgt = shifts.label_priors(spec.shift, spec.severity, k)
    src_idx = src_idx[shifts.subsample_to_prior(raw.y_train[src_idx], p_src, rng)]
    tgt_idx = tgt_idx[shifts.subsample_to_prior(tgt.y_train[tgt_idx], p_tgt, rng)]
    if len(src_idx) < spec.replay_pool:
        raise ConfigError(f"setting.replay_pool: {spec.replay_pool} is larger than the source pool "
                          f"({len(src_idx)} examples); lower it")
    relabel = shifts.label_map(spec.shift, spec.severity, k)

    def target_version(x_u8, noise_seed):
        x = x_u8.astype(np.float32) / 255.0
        return _to_uint8(shifts.apply_covariate(spec.shift, spec.severity, x, spec.split_seed, noise_seed))

    test_idx = rng.permutation(len(raw.y_test))[: spec.eval_size]
    x_test, y_test = raw.x_test[test_idx], raw.y_test[test_idx]
    if tgt is raw:  # one dataset: source and target test sets are the same images, the target shifted
        xt_test, yt_test = x_test, y_test
    else:
        t_idx = rng.permutation(len(tgt.y_test))[: spec.eval_size]
        xt_test, yt_test = tgt.x_test[t_idx], tgt.y_test[t_idx]
    replay_idx = src_idx[rng.permutation(len(src_idx))[: spec.replay_pool]]
    data = Data(
        source_x=raw.x_train[src_idx], source_y=raw.y_train[src_idx],
        replay_x=raw.x_train[replay_idx], replay_y=raw.y_train[replay_idx],
        target_x=target_version(tgt.x_train[tgt_idx], spec.split_seed + 1),
        target_y=relabel[tgt.y_train[tgt_idx]].astype(np.int32),
        source_test_x=x_test, source_test_y=y_test, source_test_w=_eval_weights(y_test, p_src),
        target_test_x=target_version(xt_test, spec.split_seed + 2),
        target_test_y=relabel[yt_test].astype(np.int32),
        target_test_w=_eval_weights(relabel[yt_test], p_tgt),  # p_tgt is uniform unless labels keep their names
    )
    info = {"dataset": raw.name if tgt is raw else f"{raw.name} -> {tgt.name}",
            "paper_data": raw.paper_data and tgt.paper_data,
            "data_source": raw.source if tgt is raw else [raw.source, tgt.source],
            "num_classes": k, "source_pool": int(len(src_idx)), "target_pool": int(len(tgt_idx)),
            "replay_pool": int(spec.replay_pool), "eval_size": int(len(test_idx)),
            "image_shape": list(raw.x_train.shape[1:])}
    return jax.device_put(jax.tree.map(jnp.asarray, data)), info


# ----------------------------------------------------------------------------- per-run programs


def _images(x_u8):
    return x_u8.astype(jnp.float32) / 255.0


def _xent(logits, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _sample(key, x, y, batch):
    idx = jax.random.randint(key, (batch,), 0, x.shape[0])
    return _images(x[idx]), y[idx]


def _optimizer(name: str, lr):
    return optax.adam(lr) if name == "adam" else optax.sgd(lr, momentum=0.9)


class Programs:
    """The compiled per-run functions of one spec (built once, reused across chunks and groups)."""

    def __init__(self, spec: Spec, model, num_classes: int):
        self.spec, self.model, self.k = spec, model, num_classes
        self._chunks = {}

    # -- init
    def init_source(self, seed_key, sample_x):
        params = self.model.init(jax.random.fold_in(seed_key, 0), sample_x[:1])["params"]
        opt = _optimizer(self.spec.optimizer, self.spec.source_lr)
        return {"params": params, "opt_state": opt.init(params), "step": jnp.zeros((), jnp.int32)}

    def init_adapt(self, params, hp, reg: str):
        opt = _optimizer(self.spec.optimizer, hp["lr"])
        state = {"params": params, "opt_state": opt.init(params), "step": jnp.zeros((), jnp.int32)}
        if reg != "none":
            state["anchor"] = params
        return state

    # -- evaluation (both domains, prior-weighted accuracy)
    def evaluate(self, state, hp, data: Data):
        apply = lambda x: self.model.apply({"params": state["params"]}, _images(x))  # noqa: E731
        out = {}
        for dom in ("source", "target"):
            x, y, w = (getattr(data, f"{dom}_test_{s}") for s in ("x", "y", "w"))
            logits = apply(x)
            nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            out[f"{dom}_acc"] = jnp.sum(w * (jnp.argmax(logits, -1) == y))
            out[f"{dom}_loss"] = jnp.sum(w * nll)
        return out

    # -- one source-phase update
    def source_step(self, state, hp, data: Data):
        key = jax.random.fold_in(jax.random.fold_in(hp["key"], 1), state["step"])
        x, y = _sample(key, data.source_x, data.source_y, self.spec.target_batch)
        loss, grads = jax.value_and_grad(
            lambda p: _xent(self.model.apply({"params": p}, x), y))(state["params"])
        opt = _optimizer(self.spec.optimizer, self.spec.source_lr)
        updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
               "step": state["step"] + 1}
        return new, {"loss_source": loss}

    # -- one adaptation update with the smoothed objective
    def adapt_step(self, state, hp, data: Data, with_source: bool = True):
        method: Method = hp["method"]
        t = state["step"]
        lam = method.schedule(t)
        # the data order depends on the seed and step only, never on the method: runs are paired
        key = jax.random.fold_in(jax.random.fold_in(hp["key"], 2), t)
        k_tgt, k_src = jax.random.split(key)
        xt, yt = _sample(k_tgt, data.target_x, data.target_y, self.spec.target_batch)
        apply = lambda p, x: self.model.apply({"params": p}, x)  # noqa: E731

        def source_loss(p):
            xs, ys = _sample(k_src, data.replay_x, data.replay_y, self.spec.source_batch)
            return _xent(apply(p, xs), ys)

        reg = None
        if method.reg == "l2":
            reg = lambda p: l2_to_anchor(p, state["anchor"])  # noqa: E731
        elif method.reg == "kl":
            reg = lambda p: kl_to_anchor(apply(p, xt), apply(state["anchor"], xt))  # noqa: E731

        grads, info = jax.grad(
            lambda p: smoothed_loss(p, lam, source_needed(lam), lambda q: _xent(apply(q, xt), yt),
                                    source_loss if with_source else None, reg, method.reg_coef),
            has_aux=True)(state["params"])
        if classifiers.HEAD in grads:  # LP-FT: during the probe only the head's gradient is kept
            train = method.trains_backbone(t)
            grads = {k: g if k == classifiers.HEAD else jax.tree.map(lambda x: jnp.where(train, x, 0.0), g)
                     for k, g in grads.items()}
        opt = _optimizer(self.spec.optimizer, hp["lr"])
        updates, opt_state = opt.update(grads, state["opt_state"], state["params"])
        new = dict(state, params=optax.apply_updates(state["params"], updates), opt_state=opt_state,
                   step=t + 1)
        return new, {"loss_target": info["loss_target"], "loss_source": info["loss_source"],
                     "lam": info["lam"], "reg": info["reg"]}

    # -- compiled batches (cached per static structure)
    def source_chunk(self):
        if "source" not in self._chunks:
            self._chunks["source"] = engine.make_chunk(
                self.source_step, lambda s, h, d: {k: v for k, v in self.evaluate(s, h, d).items()
                                                   if k.startswith("source")},
                self.spec.steps_per_eval, self.spec.source_evals_per_chunk)
        return self._chunks["source"]

    def adapt_chunk(self, signature, with_source: bool = True):
        """The adaptation chunk; ``with_source=False`` compiles the source branch out entirely."""
        key = ("adapt", signature, with_source)
        if key not in self._chunks:
            step = self.adapt_step if with_source else (
                lambda s, h, d: self.adapt_step(s, h, d, with_source=False))
            self._chunks[key] = engine.make_chunk(step, self.evaluate,
                                                  self.spec.steps_per_eval, self.spec.evals_per_chunk)
        return self._chunks[key]

    def source_free_from(self, methods: list[Method]) -> int | None:
        """The first chunk from which every run has lam = 1 for good (None: never, a constant mix).

        Chunk c covers steps [c S, (c + 1) S); a ramp gives lam = 1 for every t >= T.
        """
        ends = [m.schedule.ends_at for m in methods]
        if any(e is None for e in ends):
            return None
        t_max = max(ends)
        per_chunk = self.spec.steps_per_eval * self.spec.evals_per_chunk
        return int(-(-t_max // per_chunk))

    def eval_batch(self):
        if "eval" not in self._chunks:
            self._chunks["eval"] = engine.make_eval(self.evaluate)
        return self._chunks["eval"]


# ----------------------------------------------------------------------------- runs


def expand_runs(spec: Spec) -> list[dict]:
    """Every (method, swept numbers, seed) run of ``spec`` (see :func:`common.expand_runs`)."""
    return common.expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, spec.lr)


def seed_keys(spec: Spec) -> jnp.ndarray:
    return jnp.stack([jax.random.key_data(jax.random.key(spec.seed + i)) for i in range(spec.num_seeds)])


def train_source(progs: Programs, data: Data, spec: Spec, mesh=None, callbacks=(), checkpoints=None):
    """Source phase for every seed in one compiled batch; returns (state, metrics [seeds, evals]).
    ``checkpoints``: resume from / save to (tag ``source``), see :class:`engine.Checkpoints`."""
    keys = seed_keys(spec)
    hp = {"key": keys}
    n = spec.num_seeds
    n_pad = engine.padded_size(n, 1 if mesh is None else mesh.size)
    state = jax.vmap(lambda k: progs.init_source(k, data.source_x))(keys)
    state, hp_p = engine.pad_runs(state, n, n_pad), engine.pad_runs(hp, n, n_pad)
    state, hp_p = engine.shard_runs(state, mesh), engine.shard_runs(hp_p, mesh)
    n_chunks = spec.source_steps // spec.steps_per_eval // spec.source_evals_per_chunk
    res = engine.run_loop(progs.source_chunk(), state, hp_p, data, n_chunks, callbacks,
                          checkpoints=checkpoints, tag="source")
    state = jax.tree.map(lambda x: x[:n], res.state)
    return state, {k: v[:n] for k, v in res.metrics.items()}


def adapt_group(progs: Programs, data: Data, spec: Spec, runs: list[dict], source_params,
                mesh=None, callbacks=(), checkpoints=None, tag: str = "adapt"):
    """Adapt one batch of runs sharing a static structure; metrics include the eval at the switch.
    ``checkpoints``: resume from / save to (``tag``), see :class:`engine.Checkpoints`."""
    methods = [r["method"] for r in runs]
    reg = methods[0].reg
    keys = seed_keys(spec)
    seed_idx = jnp.asarray([r["seed_index"] for r in runs])
    hp = {"key": keys[seed_idx], "method": engine.stack_runs(methods),
          "lr": jnp.asarray([r["lr"] for r in runs], jnp.float32)}
    params = jax.tree.map(lambda x: x[seed_idx], source_params)
    state = jax.vmap(lambda p, h: progs.init_adapt(p, h, reg))(params, hp)
    n = len(runs)
    n_pad = engine.padded_size(n, 1 if mesh is None else mesh.size)
    state, hp = engine.pad_runs(state, n, n_pad), engine.pad_runs(hp, n, n_pad)
    state, hp = engine.shard_runs(state, mesh), engine.shard_runs(hp, mesh)
    at_switch = jax.device_get(progs.eval_batch()(state, hp, data))
    n_chunks = spec.adapt_steps // spec.steps_per_eval // spec.evals_per_chunk
    # once every run is past its ramp the host swaps in a program without the source branch
    first_free = progs.source_free_from(methods)
    later = None
    if first_free is not None and first_free < n_chunks:
        later = (first_free, progs.adapt_chunk(methods[0].signature, with_source=False))
    res = engine.run_loop(progs.adapt_chunk(methods[0].signature), state, hp, data, n_chunks, callbacks,
                          later=later, checkpoints=checkpoints, tag=tag)
    metrics = {}
    for k, v in res.metrics.items():
        first = np.asarray(at_switch[k])[:, None] if k in at_switch else np.full((n_pad, 1), np.nan)
        if k == "lam":
            first = np.asarray(jax.vmap(lambda m: m.schedule(0))(hp["method"]))[:, None]
        metrics[k] = np.concatenate([first, v], axis=1)[:n]
    return jax.tree.map(lambda x: x[:n], res.state), metrics, res.diverged_at[:n]


