"""Setting 3, offline-to-online RL (TD3+BC -> TD3), behind the setting contract.

The source phase is TD3+BC on the dataset D for every seed in one ``jit(vmap(scan of updates))`` batch,
no environment step, evaluated from its start; the adaptation phase fine-tunes every method online
from that agent (:mod:`.objective`). Evaluation: the deterministic policy's mean return on the task
and its normalized score ``100 (R - R_random) / (R_expert - R_random)`` with the dataset's references.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax

from lossmooth.core import engine
from lossmooth.offline import datasets as D
from lossmooth.offline import scores
from lossmooth.rl import agents as A
from lossmooth.settings.contract import Context, Curves, Line, Phase, PhaseResult, Policy, Setting, batches
from lossmooth.settings.offline_to_online import objective as O
from lossmooth.settings.offline_to_online.config import Spec, parse
from lossmooth.settings.offline_to_online.data import load_dataset

SHIFT = "offline->online"


@dataclass
class Loaded:
    data: D.Transitions
    buffer: object  # D as a replay buffer, shared by every run
    agents: A.Agents
    info: dict


class OfflineToOnline(Setting):
    """TD3+BC offline, then online TD3 with the hard switch, loss smoothing and the controls."""

    name = "offline_to_online"
    capabilities = frozenset({"scratch", "offline_batches"})
    curves = Curves(kind="score", target="target_score", success="target_success")
    step_unit = "env_steps"
    line_key = "algo"

    def parse(self, cfg: dict) -> Spec:
        """The config, validated (config.py), with each method's per-run fields (:func:`.objective.method_fields`)."""
        spec = parse(cfg)
        return dataclasses.replace(spec, method_fields=O.method_fields(spec))

    def load(self, spec: Spec, cfg: dict, choices: dict) -> Loaded:
        data = load_dataset(spec)
        eval_runs = max([spec.num_seeds] + [len(g) for g in batches(self, self.runs(spec))])
        agents = O.build_agents(spec, data, eval_runs)  # checks the dataset against the environment
        own = spec.dataset["kind"] == "own"
        returns = data.episode_returns()
        info = {"dataset_sha256": data.content_hash(),
                "dataset_returns": {"episodes": int(len(returns)),
                                    "mean": float(returns.mean()) if len(returns) else None,
                                    "min": float(returns.min()) if len(returns) else None,
                                    "max": float(returns.max()) if len(returns) else None},"stand_in": own, "paper_data": not own,
                "data": f"{data.name} ({data.info.get('source')}, {len(data)} transitions)",
                "environment": O.env_name(spec, data), "ref_scores": list(data.ref_scores),
                "dataset_info": {k: v for k, v in data.info.items() if isinstance(v, (str, int, float))},
                "source_steps": spec.source_steps, "adapt_steps": spec.adapt_steps["td3"],
                "td3": spec.algos["td3"], "bc_alpha": spec.bc_alpha}
        return Loaded(data, O.dataset_buffer(data), agents, info)

    def lines(self, spec: Spec, loaded) -> list[str]:
        return ["td3"]

    def _offline_chunking(self, spec: Spec) -> tuple[int, int]:
        """(TD3+BC rounds per evaluation, chunks) of the source phase."""
        delay = spec.algos["td3"]["policy_delay"]
        rounds = spec.source_steps // delay
        every = min(spec.source_eval_every // delay, rounds)
        return every, max(1, -(-rounds // every))

    def describe(self, spec: Spec, loaded: Loaded, line: str) -> Line:
        """The dataset column names the data itself: its content hash (first 8 hex digits) and the
        (random, expert) reference returns its scores are normalized with, which with the hash identify
        it. The source phase's steps are TD3+BC updates, the adaptation's environment steps."""
        every, n = self._offline_chunking(spec)
        delay, ag = spec.algos["td3"]["policy_delay"], loaded.agents
        spe, n_chunks = A.chunking(ag, spec.eval_every["td3"], spec.adapt_steps["td3"])
        per, (lo, hi) = ag.steps_per_iteration, loaded.data.ref_scores
        return Line(dataset=f"{loaded.data.name} (sha256 {loaded.info['dataset_sha256'][:8]}; refs {lo:.0f}, {hi:.0f})",
                    model="td3", shift=SHIFT, severity=0.0, source=Policy(every * delay * n, every * delay),
                    adapt=Policy(spe * per * n_chunks, spe * per, updates=A.updates_after(ag, spe * n_chunks)),
                    identity={"dataset_sha256": loaded.info["dataset_sha256"], "ref_scores": [lo, hi]})

    def _with_score(self, ref):
        return lambda m: {**m, "target_score": scores.normalized(m["target_return"], ref)}

    def source_phase(self, ctx: Context, line: str) -> Phase:
        spec, ld, mesh = ctx.spec, ctx.loaded, ctx.mesh
        ag = ld.agents
        every, n_chunks = self._offline_chunking(spec)
        chunk = O.offline_chunk(ag, every, mesh)
        runs = self.runs(spec)
        groups = [[runs[i] for i in g] for g in batches(self, runs)]

        def online_ahead(c, state):
            if c == 0:  # the online programs compile on the spare core while TD3+BC trains
                src = PhaseResult(jax.tree.map(lambda x: x[: spec.num_seeds], state), {}, None, None)
                engine.compile_queue([p for g in groups for p in self._programs(ctx, g, src)])

        return Phase(state=O.offline_init(ag, spec, ld.data), hp=engine.stack_runs([ag.adapt] * spec.num_seeds),
                     chunk=chunk, data=ld.buffer, n_chunks=n_chunks,
                     eval_every=every * spec.algos["td3"]["policy_delay"],
                     evaluate=lambda s, h, d: A.evaluate(ag, s, mesh),
                     ahead=lambda s, h: engine.compile_ahead(chunk.train, s, h, ld.buffer),  # while the evaluation compiles
                     on_chunk=online_ahead, derive=self._with_score(ld.data.ref_scores))

    def _online(self, ctx: Context, runs: list[dict], source: PhaseResult, host_envs=None):
        spec, ag, mesh = ctx.spec, ctx.loaded.agents, ctx.mesh
        state, hp = A.adapt_init(ag, A.seed_keys(spec.seed, spec.num_seeds, "td3"), source.state, runs,
                                 spec.reset_optimizer)
        spe, n_chunks = A.chunking(ag, spec.eval_every["td3"], spec.adapt_steps["td3"])
        first_free = A.source_free_from(ag, runs, spe, n_chunks)
        later = None if first_free is None else (first_free, A.adapt_chunk(ag, spe, False, mesh, host_envs))
        return state, hp, spe, n_chunks, first_free, later

    def _programs(self, ctx: Context, runs: list[dict], source: PhaseResult) -> list:
        """The ``(jitted program, args)`` pairs the online phase of ``runs`` will run, for compiling
        them ahead (:func:`lossmooth.core.engine.compile_queue`); none where the task steps on the host."""
        if ctx.loaded.agents.host is not None:
            return []
        state, hp, spe, n_chunks, first_free, later = self._online(ctx, runs, source)
        args = (engine.place_runs(state, len(runs), ctx.mesh, self.lanes),
                engine.place_runs(hp, len(runs), ctx.mesh, self.lanes),
                ctx.loaded.buffer)
        chunk = A.adapt_chunk(ctx.loaded.agents, spe, True, ctx.mesh)
        return [(chunk.train, args)] + ([(later[1].train, args)] if later is not None else [])

    def adapt_phase(self, ctx: Context, line: str, runs: list[dict], source: PhaseResult) -> Phase:
        ld, mesh = ctx.loaded, ctx.mesh
        ag = ld.agents
        n = len(runs)
        host_envs = None
        if ag.host is not None:  # the batch's environments, padded as the runner pads the runs
            n_pad = engine.padded_size(n, 1 if mesh is None else mesh.size, self.lanes)
            host_envs = ag.host.new_envs([r["seed"] for r in runs] + [runs[-1]["seed"]] * (n_pad - n),
                                         ag.adapt.num_envs)
        state, hp, spe, n_chunks, first_free, later = self._online(ctx, runs, source, host_envs)
        ahead = None
        if later is not None and first_free > 0:  # compiles while the ramp's program compiles and runs
            ahead = lambda s, h: engine.compile_ahead(later[1].train, s, h, ld.buffer)  # noqa: E731
        return Phase(state=state, hp=hp, chunk=A.adapt_chunk(ag, spe, True, mesh, host_envs), data=ld.buffer,
                     n_chunks=n_chunks, eval_every=spe * ag.steps_per_iteration, later=later,
                     evaluate=lambda s, h, d: A.evaluate(ag, s, mesh), ahead=ahead,
                     derive=self._with_score(ld.data.ref_scores),
                     # host-stepped simulators keep their state outside the checkpoint: such a loop
                     # restarts from the switch (deterministic given the seeds)
                     checkpoint=host_envs is None, close=None if host_envs is None else host_envs.close)

    def run_fields(self, spec: Spec, loaded, line: str, run: dict, curves: dict) -> dict:
        return {"init": run["init"], "dataset_sha256": loaded.info["dataset_sha256"],
                "ref_scores": list(loaded.data.ref_scores), "offline_score": float(curves["target_score"][0]),
                "final_return": float(curves["target_return"][-1]), "eval_episodes": spec.eval_episodes}

    def finish(self, ctx: Context, rows: list[dict], sources: dict) -> dict:
        ld = ctx.loaded
        return {"task": ctx.spec.task, "dataset": ld.data.name, "ref_scores": list(ld.data.ref_scores),
                "offline_score_final": [float(x) for x in sources["td3"].metrics["target_score"][:, -1]]}


SETTING = OfflineToOnline()
