"""The CPU lowering of threefry over flat arrays (:mod:`lossmooth.core.threefry`) gives JAX's bits."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.core import threefry  # noqa: F401  (registers the lowering in this process)

# draws of every kind the settings make: ranks 1 to 4, under vmap, a truncated normal (a kernel
# initialiser), a split and a fold_in, a permutation
DRAWS = """
import jax, jax.numpy as jnp, numpy as np
keys = jax.random.split(jax.random.PRNGKey(7), 3)
draws = {
    "bits4": lambda k: jax.random.bits(k[0], (2, 3, 4, 5)),
    "uniform2": lambda k: jax.random.uniform(k[1], (17, 3)),
    "normal1": lambda k: jax.random.normal(k[2], (33,)),
    "tn_vmap": jax.vmap(lambda k: jax.random.truncated_normal(k, -2.0, 2.0, (3, 3, 2, 4))),
    "split_vmap": jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, 5), 4)),
    "perm_vmap": jax.vmap(lambda k: jax.random.permutation(k, 11)),
}
out = {name: np.asarray(jax.jit(f)(keys)).view(np.uint32).ravel().tolist() for name, f in draws.items()}
"""


def test_the_flat_lowering_gives_the_bits_of_jaxs_own():
    """Against a process that never imports lossmooth (JAX's own lowering), bit for bit."""
    ns: dict = {}
    exec(DRAWS, ns)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION")}
    plain = subprocess.run([sys.executable, "-c", DRAWS + "import json; print(json.dumps(out))"],
                           env={**env, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, check=True)
    assert json.loads(plain.stdout) == ns["out"]


def test_the_flat_lowering_is_the_one_compiled_for_rank_2_and_up():
    """A rank-4 draw's program loops over the flattened array (120 counters), never over the rank-4
    one as JAX's own lowering does."""
    four = jax.jit(lambda k: jax.random.bits(k, (2, 3, 4, 5))).lower(jax.random.PRNGKey(0)).as_text()
    loop = four[four.index("stablehlo.while"):]
    assert "tensor<120xui32>" in loop and "tensor<2x3x4x5xui32>" not in loop.split("}")[0]


def test_known_answer_of_threefry_2x32():
    """Random123's known answer (key 0x13198a2e 0x03707344, counter 0x243f6a88 0x85a308d3), on a
    2x3 array of the same counter: the rank-2 path computes the published hash."""
    from jax._src.random.threefry2x32 import threefry2x32_p

    k1, k2 = jnp.uint32(0x13198A2E), jnp.uint32(0x03707344)
    x1 = jnp.full((2, 3), 0x243F6A88, jnp.uint32)
    x2 = jnp.full((2, 3), 0x85A308D3, jnp.uint32)
    y1, y2 = jax.jit(lambda *a: threefry2x32_p.bind(*a))(k1, k2, x1, x2)
    assert np.all(np.asarray(y1) == 0xC4923A9C) and np.all(np.asarray(y2) == 0x483DF7A0)
