"""The Hydra application behind ``lossmooth run``: compose ``conf/``, hand the resolved config to the
shared runner (:mod:`lossmooth.runner`), print the run's table.

Multiruns (``-m``) go through Hydra's launchers (``hydra/launcher=joblib`` locally,
``hydra/launcher=submitit_slurm`` on a cluster); seeds are vmapped inside each job. With
``objective.metric`` set a job returns that summary's paired difference with the hard switch
(:mod:`lossmooth.results.objective`), which a sweeper that optimizes (``hydra/sweeper=optuna``) reads.

A single run whose config another process is running right now exits :data:`BUSY` (75) with one line:
nothing was produced; a sweep's job skips that config instead. A write the results folder refuses
(disk full, a rename a network filesystem loses) ends with one line and exit 1; what was written stays
and the same command resumes.
"""
from __future__ import annotations

import os
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossmooth import runner
from lossmooth.core.engine import Preempted
from lossmooth.errors import ConfigError
from lossmooth.provenance import CONF_DIR
from lossmooth.results import aggregate as agg
from lossmooth.results import objective, tables
from lossmooth.results.store import NothingToDo

BUSY = 75  # EX_TEMPFAIL: another process is running this config; nothing was produced, try again later


def print_run_table(run_dir: str) -> list[dict]:
    """Print the run's table; return its rows."""
    rows = agg.collect(os.path.dirname(os.path.dirname(run_dir)), filters={"run_dir": run_dir})
    groups, diffs, normalized = agg.tables(rows)
    print(tables.markdown(groups, diffs, normalized=normalized))
    print(f"results: {run_dir}")
    return rows


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> str | float | None:
    try:
        choices = dict(HydraConfig.get().runtime.choices)
        plain = OmegaConf.to_container(cfg, resolve=True)
        plain.pop("hydra", None)
        target = objective.parse(plain)  # before the run: a bad objective costs no training
        run_dir = runner.run_config(plain, choices)
    except (ConfigError, OmegaConfBaseException) as e:
        print(f"lossmooth: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    except NothingToDo as e:  # another process runs this config now: a sweep's job skips it, a lone run fails
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            print(f"lossmooth: {e}")
            return None
        print(f"lossmooth: error: {' '.join(str(e).split())}; wait for it to finish", file=sys.stderr)
        sys.exit(BUSY)
    except OSError as e:  # the results folder failed a write (disk full, a lost rename): what is written stays
        print(f"lossmooth: error: {' '.join(str(e).split())}; free space or fix the folder, then run the same "
              "command to resume", file=sys.stderr)
        sys.exit(1)
    except Preempted as e:
        name = signal.Signals(e.signal).name
        print(f"lossmooth: stopped by {name}; checkpoint saved in {e.args[0]}; run the same command to resume",
              file=sys.stderr)
        sys.exit(128 + int(e.signal))
    except KeyboardInterrupt:
        print("lossmooth: interrupted; checkpoints saved so far stay: run the same command to resume",
              file=sys.stderr)
        sys.exit(130)
    if run_dir is not None:
        rows = print_run_table(run_dir)
        if target is not None:
            score = objective.value(run_dir, *target, rows=rows)
            print(f"objective: {target[0]} of {target[1]} minus the hard switch (mean over seeds) = {score:.6g}")
            return score
    return run_dir
