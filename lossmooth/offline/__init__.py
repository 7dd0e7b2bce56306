# threefry: JAX's random bits compiled over flat arrays on CPU (the same bits, less compile time)
from lossmooth.core import threefry  # noqa: F401
