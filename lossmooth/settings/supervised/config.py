"""The supervised settings' config (``conf/setting/supervised.yaml``, ``pretrained_vision.yaml``),
validated into a :class:`Spec`: each field's type and bounds from the schema (``schema.py``), then
the rules that involve several fields. Steps count optimizer updates.

Budget keys, shared by name with every setting: ``setting.source_steps`` (source-phase updates),
``setting.adapt_steps`` (adaptation updates), ``setting.eval_every`` (updates between evaluations),
``setting.smoothing_T`` (the ramp's length in updates, through ``schedule.T``), ``setting.gap_window``
(updates after the switch in which the stability gap is measured), ``setting.reset_optimizer`` and,
for the engine's chunks, ``setting.evals_per_chunk`` / ``setting.source_evals_per_chunk``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lossmooth.core.config import dense_eval, integer, parse_methods, parse_sequence, parse_sweep, validate
from lossmooth.data import domains, images, shifts
from lossmooth import settings
from lossmooth.errors import ConfigError
from lossmooth.settings.contract import RunSpec
from lossmooth.settings.supervised.schema import SupervisedSetting
from lossmooth.models import classifiers

SWEEPABLE = ("T", "lam0", "value", "reg_coef", "lr", "eps", "eta", "mu0", "patience", "rho", "beta")


@dataclass(frozen=True, kw_only=True)  # (RunSpec's fields have defaults)
class Spec(RunSpec):
    """Validated plain values of one supervised run (built from the Hydra config)."""

    data_name: str
    data_dir: str | None
    model_name: str
    model_kwargs: dict
    shift: str
    severity: float
    source_steps: int
    adapt_steps: int
    target_batch: int
    source_batch: int
    replay_pool: int
    eval_every: int
    evals_per_chunk: int
    source_evals_per_chunk: int
    eval_size: int
    optimizer: str
    source_lr: float
    lr: float
    split_seed: int
    train_fraction_source: float
    reset_optimizer: bool = True
    domains: dict | None = None  # a domain pair: kind, source, target, size (px), options
    dense_steps: int = 0  # updates after the switch evaluated one by one (config dense_eval.steps)
    dense_size: int | None = None  # examples per domain of that evaluation (None: the whole eval set)
    # a sequence of switches (config ``sequence``): the shifts (name, severity) of tasks 1..k, task 0
    # the unshifted data; empty: one switch, the ``shift`` group's
    sequence: tuple = ()
    sequence_replay: str = "previous"  # the source objective at switch i: replay of task i-1 or of tasks 0..i-1


def _sequence_item(d: dict) -> tuple:
    """One ``sequence.shifts`` entry as (name, severity)."""
    shifts.validate(d["name"], d.get("severity", 0.0))
    return str(d["name"]), float(d.get("severity", 0.0))


def _domain_pair(cfg: dict, data: dict) -> dict | None:
    """A domain pair's source, target, image size and options (None for one dataset with generated
    shifts); the image size at least the model's total stride."""
    if data["name"] not in domains.KINDS:
        return None
    pair = {"kind": data["name"], "source": data.get("source_domain"), "target": data.get("target_domain"),
            "size": data.get("image_size"),
            "options": {k: v for k, v in data.items()
                        if k not in ("name", "data_dir", "source_domain", "target_domain", "image_size")}}
    domains.validate(pair["kind"], pair["source"], pair["target"], pair["size"])
    if pair["size"] < classifiers.min_image_size(cfg["model"].get("name")):
        raise ConfigError(f"data.image_size: {pair['size']} px is too small for {cfg['model'].get('name')} (at "
                          f"least {classifiers.min_image_size(cfg['model'].get('name'))} px, its total stride); "
                          "raise it")
    return pair


def parse(cfg) -> Spec:
    """Validate the composed config; every problem is one line naming the field and the fix."""
    s = cfg["setting"]
    num_seeds = integer(cfg, "num_seeds", 1)
    seed = integer(cfg, "seed", 0)
    data = cfg["data"]
    if data.get("name") not in images.DATASETS + domains.KINDS:
        raise ConfigError(f"data.name: unknown dataset '{data.get('name')}'; choose one of "
                          f"{', '.join(images.DATASETS + domains.KINDS)}")
    pair = _domain_pair(cfg, data)
    model = dict(cfg["model"])
    model_name = model.pop("name", None)
    if model_name not in classifiers.MODELS:
        raise ConfigError(f"model.name: unknown model '{model_name}'; choose one of {', '.join(classifiers.MODELS)}")
    shift = cfg["shift"]
    shifts.validate(shift.get("name"), shift.get("severity", 0.0))
    methods = parse_methods(cfg.get("method"), offers=settings.get(s["name"]))
    probing = [n for n, m in methods.items() if float(m.probe_steps) > 0]
    if probing and model_name not in classifiers.HEADED:
        raise ConfigError(f"method.{probing[0]}: LP-FT needs a model with a separate classifier head "
                          f"({', '.join(classifiers.HEADED)}), not '{model_name}'; pick one with model=...")
    sweep = parse_sweep(cfg, SWEEPABLE)
    fields = validate(s, SupervisedSetting, "setting")  # each field's type and bounds (schema.py)
    spec = Spec(
        num_seeds=num_seeds, seed=seed, data_name=data["name"], data_dir=data.get("data_dir"),
        model_name=model_name, model_kwargs=model, shift=shift["name"],
        severity=float(shift.get("severity", 0.0)), methods=methods, sweep=sweep,
        **{k: v for k, v in fields.items() if k not in ("name", "smoothing_T")},
        domains=pair,
    )
    if spec.source_batch > spec.replay_pool:
        raise ConfigError(f"setting.source_batch: {spec.source_batch} is larger than the replay pool "
                          f"(setting.replay_pool={spec.replay_pool}); lower source_batch or raise replay_pool")
    for name, per_chunk in (("source_steps", "source_evals_per_chunk"), ("adapt_steps", "evals_per_chunk")):
        n, k = getattr(spec, name), getattr(spec, per_chunk)
        if n % (spec.eval_every * k):
            raise ConfigError(f"setting.{name}: {n} is not a multiple of setting.eval_every x "
                              f"setting.{per_chunk} = {spec.eval_every * k}; make it one")
    steps, size = dense_eval(cfg, spec.eval_every, spec.evals_per_chunk)
    sequence, replay = parse_sequence(cfg, _sequence_item)
    if sequence:
        if pair is not None:
            raise ConfigError("sequence.shifts: a sequence of shifts needs one dataset with generated shifts, "
                              f"not a domain pair ({pair['kind']}); drop sequence or pick data=fashion_mnist")
        if spec.shift != "none":
            raise ConfigError(f"sequence.shifts: a sequence starts from the unshifted data, but shift={spec.shift}; "
                              "set shift=none (the sequence lists every switch's shift)")
        if steps:
            raise ConfigError("dense_eval.steps: dense evaluation is not offered with a sequence of shifts; "
                              "set dense_eval.steps=0")
    return dataclasses.replace(spec, dense_steps=steps, dense_size=size, sequence=sequence,
                               sequence_replay=replay)
