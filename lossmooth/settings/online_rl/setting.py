"""Setting 4, online RL (rejax TD3 and PPO on brax), behind the setting contract.

Each algorithm is a *line* of the run: rejax's own algorithm (preset hyperparameters) trains online on
the source task, every seed in one ``jit(vmap(...))`` batch; then every method continues online on the
target task from that agent (networks, optimizer state, observation normalizer) with the smoothed
objective (:mod:`.objective`), all runs of one compiled structure in one batch. Evaluation every
``eval_every`` target-task steps: the deterministic policy's mean return over ``eval_episodes``
episodes on the target task and on the source task (forgetting).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax

from lossmooth.core import engine
from lossmooth.rl import agents as A
from lossmooth.settings.contract import Context, Curves, Line, Phase, PhaseResult, Policy, Setting, batches
from lossmooth.settings.online_rl.config import Spec, parse
from lossmooth.settings.online_rl.objective import build_agents


@dataclass
class Loaded:
    agents: dict  # algo -> Agents
    info: dict


class OnlineRL(Setting):
    """rejax TD3 / PPO adapting from a source task to a shifted target task."""

    name = "online_rl"
    capabilities = frozenset({"scratch"})
    curves = Curves(kind="return", target="target_return", source="source_return")
    step_unit = "env_steps"
    line_key = "algo"
    sequences = True

    parse = staticmethod(parse)  # the config, validated (config.py)

    def load(self, spec: Spec, cfg: dict, choices: dict) -> Loaded:
        eval_runs = max([spec.num_seeds] + [len(g) for g in batches(self, self.runs(spec))])
        agents = {name: build_agents(spec, name, eval_runs) for name in spec.algos}  # validates the tasks too
        # the environments are the paper's kind; a budget below rejax's presets makes it a stand-in run
        # (a gymnax task is a stand-in at any budget: the paper's online RL tasks are brax locomotion)
        stand_in = choices.get("online_rl/budget") != "preset" or spec.backend is None
        info = {"stand_in": stand_in, "paper_data": not stand_in,
                "data": f"simulated environments ({'brax' if spec.backend else 'gymnax'})",
                "task": spec.task, "backend": spec.backend, "shift": spec.shift.name,
                **({"sequence": [{"shift": s.name, "severity": s.severity, **s.params} for s in spec.sequence]}
                   if spec.sequence else {}),
                "budgets": {a: {"source_steps": spec.source_steps[a], "adapt_steps": spec.adapt_steps[a]}
                            for a in spec.algos},
                "rejax_presets": {a: spec.algos[a] for a in spec.algos}}
        return Loaded(agents, info)

    def lines(self, spec: Spec, loaded) -> list[str]:
        return list(spec.algos)

    def describe(self, spec: Spec, loaded: Loaded, line: str) -> Line:
        """Steps count environment steps; one switch, or a sequence's: switch i (1-based) trains task i
        with task i - 1 as its source."""
        ag = loaded.agents[line]
        (s_spe, s_n), (spe, n) = (A.chunking(ag, spec.eval_every[line], steps[line])
                                  for steps in (spec.source_steps, spec.adapt_steps))
        per = ag.steps_per_iteration
        return Line(dataset=spec.task, model=line, shift=spec.shift.name, severity=spec.shift.severity,
                    source=Policy(s_spe * per * s_n, s_spe * per),
                    adapt=Policy(spe * per * n, spe * per, updates=A.updates_after(ag, spe * n)),
                    switches=tuple({"switch": i + 1, "shift": s.name, "severity": s.severity}
                                   for i, s in enumerate(spec.sequence)) or (None,))

    def source_phase(self, ctx: Context, line: str) -> Phase:
        spec, ag, mesh = ctx.spec, ctx.loaded.agents[line], ctx.mesh
        algo = ag.source
        state = jax.jit(jax.vmap(algo.init_state))(A.seed_keys(spec.seed, spec.num_seeds, line))
        spe, n_chunks = A.chunking(ag, spec.eval_every[line], spec.source_steps[line])
        return Phase(state=state, hp=engine.stack_runs([algo] * spec.num_seeds), chunk=A.source_chunk(ag, spe, mesh),
                     n_chunks=n_chunks, eval_every=spe * ag.steps_per_iteration,
                     # compiles on the second core while the training program compiles
                     ahead=lambda s, h: A.eval_ahead(ag, s, mesh))

    def adapt_phase(self, ctx: Context, line: str, runs: list[dict], source: PhaseResult,
                    switch: int = 0) -> Phase:
        spec, ag, mesh = ctx.spec, ctx.loaded.agents[line], ctx.mesh
        if switch:  # switch + 1 of a sequence: its own tasks; ``source`` is these runs' previous switch
            ag = A.at_switch(ag, switch + 1)
        state, hp = A.adapt_init(ag, A.seed_keys(spec.seed, spec.num_seeds, line), source.state, runs,
                                 spec.reset_optimizer, switch)
        spe, n_chunks = A.chunking(ag, spec.eval_every[line], spec.adapt_steps[line])
        # from the first chunk where every run is past its ramp, a program without the source branch
        first_free = A.source_free_from(ag, runs, spe, n_chunks)
        later = None if first_free is None else (first_free, A.adapt_chunk(ag, spe, False, mesh))
        ahead = None
        if later is not None and first_free > 0:  # compiles while the ramp's program compiles and runs
            ahead = lambda s, h: engine.compile_ahead(later[1].train, s, h, None)  # noqa: E731
        return Phase(state=state, hp=hp, chunk=A.adapt_chunk(ag, spe, True, mesh), n_chunks=n_chunks,
                     eval_every=spe * ag.steps_per_iteration, later=later,
                     evaluate=lambda s, h, d: A.evaluate(ag, s, mesh), ahead=ahead)

    def run_fields(self, spec: Spec, loaded, line: str, run: dict, curves: dict) -> dict:
        return {"init": run["init"], "target_return_at_switch": float(curves["target_return"][0]),
                "source_return_at_switch": float(curves["source_return"][0]), "eval_episodes": spec.eval_episodes}

    def finish(self, ctx: Context, rows: list[dict], sources: dict) -> dict:
        return {"algos": list(ctx.spec.algos), "task": ctx.spec.task,
                "source_return_final": {a: [float(x) for x in r.metrics["source_return"][:, -1]]
                                        for a, r in sources.items()}}


SETTING = OnlineRL()
