"""The offline-to-online setting's dataset: our own collection (``lossmooth data collect``), a Minari
dataset or a D4RL hdf5 file, with its (random, expert) reference returns for normalized scores."""
from __future__ import annotations

import os
from dataclasses import replace

from lossmooth.errors import ConfigError
from lossmooth.offline import datasets as D
from lossmooth.offline import scores
from lossmooth.offline.collect import DEFAULT_ROOT, dataset_id
from lossmooth.settings.offline_to_online.config import Spec


def load_dataset(spec: Spec) -> D.Transitions:
    """The offline dataset of ``spec`` with its (random, expert) reference returns."""
    ds = spec.dataset
    if ds["kind"] == "own":
        did = dataset_id(spec.task, ds["quality"])
        root = ds.get("root") or DEFAULT_ROOT
        if did not in _local_minari(root):
            raise ConfigError(f"dataset: our {ds['quality']} dataset for {spec.task} ('{did}') is not in "
                              f"{root}; prepare it with `lossmooth data collect task={spec.task}`")
        t = D.load_minari(did, root)
    elif ds["kind"] == "minari":
        t = D.load_minari(ds["id"], ds.get("root"))
    else:
        path = ds.get("path") or os.path.join(ds["dir"], ds["name"] + ".hdf5")
        from_file = os.path.splitext(os.path.basename(path))[0]
        if ds.get("path") and ds.get("name") and _environment(ds["name"]) != _environment(from_file):
            raise ConfigError(f"dataset.name: '{ds['name']}' names {_environment(ds['name'])} but dataset.path "
                              f"'{path}' is a {_environment(from_file)} file; drop dataset.name (the file's name "
                              "names the dataset and its reference scores) or correct it")
        t = D.load_d4rl(path, ds.get("name") or from_file)
    ref = ds.get("ref_scores")
    if ref is not None:
        ref = (float(ref[0]), float(ref[1]))
    elif ds["kind"] == "d4rl":
        ref = scores.d4rl_reference(t.name)  # D4RL's constants only for D4RL's own datasets
    else:
        ref = t.ref_scores
    if ref is None:
        raise ConfigError(f"dataset.ref_scores: '{t.name}' carries no reference returns; set "
                          "dataset.ref_scores=[random,expert]")
    return replace(t, ref_scores=ref)


def _environment(name: str) -> str:
    """The environment a D4RL dataset name starts with (``hopper_medium-v2`` -> ``hopper``)."""
    return name.replace("_", "-").split("-")[0].lower()


def _local_minari(root: str) -> list[str]:
    """The Minari datasets under ``root`` (none where the folder does not exist: nothing is created)."""
    import minari

    if not os.path.isdir(os.path.expanduser(root)):
        return []
    with D.minari_root(root):
        try:
            return list(minari.list_local_datasets())
        except Exception:
            return []
