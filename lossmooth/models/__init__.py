from lossmooth.core import threefry  # noqa: F401  (random bits compiled over flat arrays on CPU)
