"""What every torch-pretrained Flax backbone shares: the input check and the state_dict -> variables map.

Layout conversions (PyTorch -> Flax linen), chosen by the Flax leaf's name and rank:

- convolution ``kernel``: torch ``[O, I/groups, kh, kw]`` -> Flax HWIO ``[kh, kw, I/groups, O]``
  (``transpose(2, 3, 1, 0)``; a depthwise ``[C, 1, kh, kw]`` becomes ``[kh, kw, 1, C]``, which is
  what ``nn.Conv(..., feature_group_count=C)`` holds);
- dense ``kernel``: torch ``[out, in]`` -> ``[in, out]``;
- ``bias`` <- ``bias``; BatchNorm ``scale`` <- ``weight``, ``batch_stats`` ``mean``/``var`` <-
  ``running_mean``/``running_var``. BatchNorm's ``num_batches_tracked`` counter has no Flax
  counterpart (it only matters for torch's cumulative-average mode, unused by these models) and is
  consumed without being stored.
"""
from __future__ import annotations

from typing import Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.errors import ConfigError
from lossmooth.models.torch_weights import load_torch_state_dict

LEAF_TO_TORCH = {("params", "kernel"): "weight", ("params", "bias"): "bias", ("params", "scale"): "weight",
                 ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


def torch_batch_norm(train: bool, name: str, torch_momentum: float, epsilon: float) -> nn.BatchNorm:
    """A Flax BatchNorm that computes what torch's ``BatchNorm2d(eps, momentum)`` does: Flax's
    running-average momentum is ``1 - torch_momentum``, and the variance is the two-pass one (torch's;
    E[x^2] - E[x]^2 loses digits on ReLU outputs)."""
    return nn.BatchNorm(use_running_average=not train, momentum=1.0 - torch_momentum, epsilon=epsilon,
                        use_fast_variance=False, name=name)


def check_images(x, model: str, min_size: int) -> None:
    """Refuse at trace time (shapes are static) what the backbone cannot take, in one line."""
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ConfigError(f"{model}: images must be [N, H, W, 3] RGB floats in [0, 1], got shape "
                          f"{tuple(x.shape)}; repeat grayscale images over 3 channels")
    h, w = x.shape[1:3]
    if min(h, w) < min_size:
        raise ConfigError(f"image size {h}x{w}: {model} needs at least {min_size}x{min_size} px "
                          f"(total stride {min_size}); resize the images (e.g. to 224x224)")


def _to_flax_layout(leaf: str, array: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if leaf == "kernel" and array.ndim == 2:
        return array.T
    return array


def _names(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def variables_from_state_dict(template, state_dict: Mapping[str, np.ndarray], torch_module: dict[str, str],
                              source: str, fresh: tuple[str, ...] = (), dropped: tuple[str, ...] = ()):
    """Flax variables shaped like ``template`` with every leaf taken from a torch ``state_dict``.

    ``template`` is a variables tree whose leaves give shape and dtype (``jax.eval_shape`` of
    ``model.init`` is enough) and hold real initial values under the ``fresh`` paths.

    ``torch_module`` maps a Flax module path (names joined by ``/``, e.g. ``backbone/block_3/
    expand_conv``) to its torch module prefix (``_blocks.3._expand_conv``). Leaves under a path in
    ``fresh`` keep their initial values (a new head); torch keys in ``dropped`` are deliberately not
    loaded (that head's ImageNet weights). Everything else must match one to one: a Flax leaf with
    no tensor, a tensor no leaf took or two leaves took, or a shape mismatch raises
    :class:`ConfigError` naming them and ``source`` (the weights file), so a wrong file or a wrong
    port cannot load partially.
    """
    used = set(dropped) | {k for k in state_dict if k.endswith("num_batches_tracked")}
    missing, bad_shape, twice, filled = [], [], [], {}
    for path, init in flax.traverse_util.flatten_dict(flax.core.unfreeze(template)).items():
        collection, *module, leaf = path
        module_path = "/".join(module)
        if any(module_path == f or module_path.startswith(f + "/") for f in fresh):
            filled[path] = init
            continue
        prefix = torch_module.get(module_path, "?" + module_path)  # "?": no torch module for it
        key = f"{prefix}.{LEAF_TO_TORCH.get((collection, leaf), leaf)}"
        if key not in state_dict:
            missing.append(key)
            continue
        array = _to_flax_layout(leaf, np.asarray(state_dict[key]))
        if array.shape != init.shape:
            bad_shape.append(f"{key} {array.shape} vs {tuple(init.shape)}")
        if key in used:
            twice.append(key)
        used.add(key)
        filled[path] = np.asarray(array, dtype=init.dtype)
    unused = set(state_dict) - used
    if missing or unused or bad_shape or twice:
        raise ConfigError(f"weights {source} do not match the model: "
                          + "; ".join(f"{what}: {_names(keys)}" for what, keys in
                                      (("missing", missing), ("unused", unused), ("shape", bad_shape),
                                       ("used twice", twice)) if keys)
                          + "; use the weights file made for this architecture")
    return flax.traverse_util.unflatten_dict(filled)


def pretrained_variables(model, rng, path, torch_module: dict[str, str], min_size: int):
    """``{'params', 'batch_stats'}`` for ``model`` (``backbone`` + ``head`` submodules) from a weights file.

    The file's classifier (torch prefix ``torch_module['head']``) is loaded when ``model.num_classes``
    equals its number of outputs; otherwise the head keeps a fresh initialisation from ``rng`` and
    the file's classifier tensors are dropped. Every other tensor must fill exactly one variable.
    """
    state_dict = load_torch_state_dict(path)
    head_weight = state_dict.get(torch_module["head"] + ".weight")
    if head_weight is None or head_weight.ndim != 2:
        raise ConfigError(f"weights {path}: no classifier {torch_module['head']}.weight [classes, features]; "
                          "use the weights file made for this architecture")
    # shapes only: running init would compile the whole network with its initialisers (slow on CPU)
    template = flax.core.unfreeze(jax.eval_shape(model.init, rng, jnp.zeros((1, min_size, min_size, 3))))
    keep_head = model.num_classes == head_weight.shape[0]
    if not keep_head:
        template["params"]["head"] = model.init(rng, jnp.zeros((1, head_weight.shape[1])),
                                                method=lambda m, f: m.head(f))["params"]["head"]
    head_keys = tuple(k for k in state_dict if k.startswith(torch_module["head"] + "."))
    loaded = variables_from_state_dict(template, state_dict, torch_module, source=str(path),
                                       fresh=() if keep_head else ("head",),
                                       dropped=() if keep_head else head_keys)
    return jax.tree.map(jnp.asarray, loaded)
