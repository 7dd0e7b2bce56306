"""A memory plan for the paper path: the bytes one device needs for the compiled update of OLMo-1B at
``lm_budget=paper`` and of DomainNet at 224 px (EfficientNet-Lite0, ResNet-50), on 1, 2, 4 and 8
devices, from abstract shapes only: no weights, no data, nothing allocated.

    python benchmarks/memory_plan.py [lm | vision | all] [--devices 1 2 4 8]

Each program is the one the runner runs (``engine.make_chunk`` of the setting's own step and
evaluation, with the state donated as on an accelerator), placed as the runner places it
(:func:`lossmooth.runner.phase.place_phase`): the LM's one run spread over every device (its weights
and AdamW moments FSDP-style, its rows data-parallel, ``shard=auto``), the vision batch of runs split
over the devices by run. It is lowered from ``jax.ShapeDtypeStruct`` arguments (``jax.eval_shape`` of
the initializers) and compiled; XLA's ``memory_analysis()`` gives per device the arguments, the
outputs, the bytes they share (donation) and the temporaries. The plan's figure is
``resident + outputs - aliased + temporaries``, where ``resident`` is every argument as placed on
one device (state, per-run numbers, and all the data, including arrays this program does not read
and jit therefore drops from its arguments: the run keeps them on the device). The devices are
this machine's CPU forced to 8 (``--xla_force_host_platform_device_count``): XLA's CPU compiler
assigns buffers, so an accelerator's figure differs by its own fusion and scheduling (and a GPU
allocator's reserve on top); a row marked "fits" leaves that margin to the reader.

What is counted, beside the program's own buffers: the data a run keeps on the device.
For the LM, the packed rows of one pass over the target (updates x rows per update) and as many
replay rows, plus the held-out evaluation rows (the real sizes depend on the corpus: printed). For
DomainNet, both domains' whole train splits live on every device as uint8 (real: 120,906 images,
clipart: 33,525), as the supervised setting keeps them.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

# XLA's CPU scheduler by default orders work for concurrency, which keeps the activations remat would
# free (measured: an 8-layer chain's temporaries with remat 757 MB, without 743 MB; in the
# memory-minimizing order 126 and 535 MB); the
# memory-minimizing order is the one an accelerator's memory-aware scheduler approaches. Only as a
# command: imported (benchmarks/accelerator_check.py), the plan compiles for the importer's devices
if __name__ == "__main__":
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                               " --xla_cpu_enable_concurrency_optimized_scheduler=false")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lossmooth.core import engine, sharding  # noqa: E402
from lossmooth.core.objective import RUN_AXIS  # noqa: E402
from lossmooth.runner.compose import compose  # noqa: E402

GB = 1e9
FITS = (40, 80, 141)  # GB: A100-40G, A100/H100-80G, H200
# OLMo-1B's config.json (allenai/OLMo-1B-hf); the plan needs its shapes only
OLMO_1B = {"architectures": ["OlmoForCausalLM"], "model_type": "olmo", "hidden_size": 2048,
           "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 16,
           "num_key_value_heads": 16, "max_position_embeddings": 2048, "rope_theta": 10000.0,
           "vocab_size": 50304, "tie_word_embeddings": True, "clip_qkv": None, "hidden_act": "silu",
           "attention_bias": False, "pad_token_id": 1, "eos_token_id": 50279}
# DomainNet's train splits as tensorflow-datasets prepares them
DOMAINNET_TRAIN = {"real": 120906, "clipart": 33525, "infograph": 36023, "painting": 50416,
                   "quickdraw": 120750, "sketch": 48212}


def abstract(tree, shardings=None):
    """``ShapeDtypeStruct`` leaves (with their shardings) of a tree of arrays or shapes."""
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def with_run_axis(tree, n: int):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((n, *x.shape), x.dtype), tree)


def plan(chunk, state, hp, data, mesh, shard_state: bool) -> dict:
    """Compile ``chunk`` for abstract (state, hp, data) placed on ``mesh``; bytes per device."""
    state_sh = sharding.state_shardings(state, mesh) if shard_state else jax.tree.map(
        lambda _: NamedSharding(mesh, P(RUN_AXIS)), state)
    hp_sh = jax.tree.map(lambda _: NamedSharding(mesh, P(RUN_AXIS)), hp)
    data_sh = jax.tree.map(lambda _: NamedSharding(mesh, P()), data)
    args = abstract(state, state_sh), abstract(hp, hp_sh), abstract(data, data_sh)
    with jax.set_mesh(mesh):
        compiled = chunk.lower(*args).compile()
    return footprint(compiled, args)


def placed_bytes(x) -> int:
    """Bytes of one argument on one device: its shard as placed (whole where it has no sharding)."""
    x = x if hasattr(x, "dtype") else np.asarray(x)
    sharding = getattr(x, "sharding", None)
    shape = sharding.shard_shape(x.shape) if sharding is not None else x.shape
    return math.prod(shape) * np.dtype(x.dtype).itemsize


def footprint(compiled, args) -> dict:
    """The plan's bytes per device of ``compiled`` called on ``args`` (abstract or concrete arrays, as
    placed): ``resident + outputs - aliased + temporaries`` from XLA's ``memory_analysis()``."""
    m = compiled.memory_analysis()
    # every argument as placed, whether or not the program reads it: jit drops the arguments a program
    # does not read (the source pool in an adaptation chunk), but the run keeps them on the device
    resident = sum(placed_bytes(s) for s in jax.tree.leaves(args))
    total = resident + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
    return {"resident": resident, "arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
            "aliased": m.alias_size_in_bytes, "temporaries": m.temp_size_in_bytes, "total": total}


def row(name: str, d: int, p: dict, note: str = "") -> str:
    fits = " ".join(f"{'yes' if p['total'] <= g * GB else 'no'}" for g in FITS)
    return (f"| {name} | {d} | {p['resident'] / GB:.1f} | {p['temporaries'] / GB:.1f} | "
            f"{(p['outputs'] - p['aliased']) / GB:.1f} | **{p['total'] / GB:.1f}** | {fits} |{note}")


HEADER = ("| program | devices | resident GB (state, numbers, data) | temporaries GB | outputs not donated GB | "
          "per device GB | fits 40 / 80 / 141 GB |\n|---|---|---|---|---|---|---|")


# ----------------------------------------------------------------------------- LM


def lm(devices: list[int], overrides: list[str] = ()) -> list[str]:
    from lossmooth.core.runs import expand_runs
    from lossmooth.lm.models import train as T
    from lossmooth.lm.models.decoder import Decoder, DecoderConfig
    from lossmooth.settings.lm.config import parse
    from lossmooth.settings.lm.objective import make_eval, make_step
    from lossmooth.settings.lm.setting import train_spec

    cfg = compose(["setting=lm", "lm_model=olmo_1b", "lm_budget=paper", "lm_target=hh", "judge=none",
                   "lm_model.path=unused", "method=[loss_smoothing]", "num_seeds=1", *overrides])
    spec = parse(cfg)
    b, tspec = spec.budget, train_spec(spec)
    mcfg = DecoderConfig.from_hf_config(OLMO_1B, dtype=spec.model["dtype"], remat=spec.model["remat"],
                                        max_len=b["seq_len"])
    params = jax.eval_shape(lambda: Decoder(mcfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"])
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    state = with_run_axis(jax.eval_shape(lambda p: T.init_state(p, tspec), params), 1)
    (run,) = expand_runs(spec.methods, spec.sweep, 1, 0, lr=b["lr"])
    rows_per_update = b["accum"] * b["micro_batch"]
    hp = {"method": engine.stack_runs([run["method"]]), "lr": jax.ShapeDtypeStruct((1,), jnp.float32),
          "target_order": jax.ShapeDtypeStruct((1, b["adapt_steps"], rows_per_update), jnp.int32),
          "replay_order": jax.ShapeDtypeStruct((1, b["adapt_steps"], rows_per_update), jnp.int32)}
    hp = abstract(hp)
    L = b["seq_len"]

    def rows(n):
        return {"tokens": jax.ShapeDtypeStruct((n, L), jnp.int32), "loss_mask": jax.ShapeDtypeStruct((n, L), jnp.bool_),
                "segment_ids": jax.ShapeDtypeStruct((n, L), jnp.int32),
                "positions": jax.ShapeDtypeStruct((n, L), jnp.int32)}

    n_rows = b["adapt_steps"] * rows_per_update
    data = {"target": rows(n_rows), "replay": rows(n_rows), "eval_target": rows(b["eval_rows"]),
            "eval_replay": rows(b["eval_rows"])}
    data_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(data))
    chunk = engine.make_chunk(make_step(mcfg, tspec), make_eval(mcfg, tspec), b["eval_every"],
                              b["evals_per_chunk"], donate=True, one_run=True)  # as the LM setting compiles it
    print(f"LM: OLMo-1B ({n_params / 1e9:.3f}B parameters, float32 weights and AdamW moments, "
          f"{mcfg.dtype} compute, remat={mcfg.remat}); lm_budget=paper: {b['accum']} micro-batches x "
          f"{b['micro_batch']} rows x {L} tokens per update (target and replay), lm_target=hh's "
          f"{b['adapt_steps']} updates; data on device: {n_rows} target + {n_rows} replay rows + "
          f"2 x {b['eval_rows']} evaluation rows = {data_bytes / GB:.2f} GB", flush=True)
    out = []
    for d in devices:
        mesh = sharding.phase_mesh(jax.devices()[:d], 1, "auto", pad_runs=False)
        p = plan(chunk, state, hp, data, mesh, shard_state=True)
        line = row(f"OLMo-1B update + evaluation, 1 run (shard={d})", d, p)
        print(line, flush=True)
        out.append(line)
    return out


# ----------------------------------------------------------------------------- vision


def pretrained_shapes(name: str, k: int, conv: str = "native"):
    """The pretrained model as the setting builds it on an accelerator (XLA's native convolution,
    ``conv_impl=auto`` there), with zeros for its weights (the plan needs shapes only, and no weights
    file need be here): ``classifiers.Pretrained`` of the network."""
    from lossmooth.models import classifiers

    if name == "efficientnet_lite0":
        from lossmooth.models.efficientnet import EfficientNetLite0 as Net
    else:
        from lossmooth.models.resnet50 import ResNet50 as Net
    net = Net(num_classes=k, conv_impl=conv)  # native: an accelerator's choice (conv_impl=auto on GPU/TPU)
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return classifiers.Pretrained(net, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes))


def vision(devices: list[int], model_name: str, conv: str = "native") -> list[str]:
    from lossmooth.core.runs import expand_runs
    from lossmooth.settings.supervised.config import parse
    from lossmooth.settings.supervised.data import Data
    from lossmooth.settings.supervised.setting import Programs

    cfg = compose(["setting=pretrained_vision", "data=domain_net", f"model={model_name}"])
    spec = parse(cfg)
    d = spec.domains
    size, k = d["size"], 345
    model = pretrained_shapes(spec.model_name, k, conv)
    progs = Programs(spec, model, k)
    runs = expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, spec.lr)
    group = [r for r in runs if r["method"].signature == runs[0]["method"].signature]
    n = len(group)
    img = (size, size, 3)
    x = lambda m: jax.ShapeDtypeStruct((m, *img), jnp.uint8)  # noqa: E731
    y = lambda m: jax.ShapeDtypeStruct((m,), jnp.int32)  # noqa: E731
    w = lambda m: jax.ShapeDtypeStruct((m,), jnp.float32)  # noqa: E731
    n_src, n_tgt, ev = DOMAINNET_TRAIN[d["source"]], DOMAINNET_TRAIN[d["target"]], spec.eval_size
    data = Data(source_x=x(n_src), source_y=y(n_src), replay_x=x(spec.replay_pool), replay_y=y(spec.replay_pool),
                target_x=x(n_tgt), target_y=y(n_tgt), source_test_x=x(ev), source_test_y=y(ev),
                source_test_w=w(ev), target_test_x=x(ev), target_test_y=y(ev), target_test_w=w(ev))
    data_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(data))
    keys = jax.eval_shape(lambda: jax.vmap(jax.random.key)(jnp.arange(n)))
    hp = {"key": keys, "method": engine.stack_runs([r["method"] for r in group]),
          "lr": jax.ShapeDtypeStruct((n,), jnp.float32)}
    src = jax.eval_shape(lambda k: jax.vmap(lambda kk: progs.init_source(kk, jnp.zeros((1, *img), jnp.uint8)))(k),
                         keys)
    state = jax.eval_shape(lambda s, h: jax.vmap(lambda a, b: progs.init_adapt(a, b, group[0]["method"].reg))(s, h),
                           src, hp)
    hp = abstract(hp)
    n_params = sum(int(np.prod(a.shape[1:])) for a in jax.tree.leaves(src["params"]))
    chunk = engine.make_chunk(progs.adapt_step, progs.evaluate, spec.eval_every, spec.evals_per_chunk, donate=True)
    print(f"vision: {model_name} ({n_params / 1e6:.1f}M parameters), DomainNet {d['source']} -> {d['target']} at "
          f"{size} px, {n} runs per program ({', '.join(sorted({r['name'] for r in group}))} x "
          f"{spec.num_seeds} seeds), batches {spec.target_batch} target + {spec.source_batch} replay, "
          f"{spec.eval_size} test images per domain; data on every device: {data_bytes / GB:.1f} GB", flush=True)
    out = []
    for dev in devices:
        if n % dev:
            continue
        mesh = sharding.phase_mesh(jax.devices()[:dev], n, "auto")
        p = plan(chunk, state, hp, data, mesh, shard_state=True)
        line = row(f"{model_name} ({conv} conv) adaptation chunk, {n} runs ({n // dev} per device)", dev, p)
        print(line, flush=True)
        out.append(line)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", default="all", choices=("lm", "vision", "all"))
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50"])
    ap.add_argument("--conv", default="native", choices=("native", "im2col"),
                    help="the vision models' convolution: native (XLA's, what an accelerator runs) or im2col (CPU's)")
    ap.add_argument("--lm", nargs="*", default=[], metavar="OVERRIDE",
                    help="config overrides for the LM plan, e.g. lm_budget.micro_batch=4 lm_budget.accum=32")
    args = ap.parse_args()
    lines = []
    print(HEADER, flush=True)
    if args.what in ("lm", "all"):
        lines += lm(args.devices, args.lm)
    if args.what in ("vision", "all"):
        for m in args.models:
            lines += vision(args.devices, m, args.conv)
    print("\n" + HEADER + "\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
