"""Setting 1, controlled supervised shifts: ``python experiments/supervised.py [hydra overrides]``.

The same as ``lossmooth run setting=supervised ...``; composes conf/ and calls lossmooth.
"""
import sys

from lossmooth.app import main

if __name__ == "__main__":
    if not any(a.startswith("setting=") for a in sys.argv[1:]):
        sys.argv.append("setting=supervised")
    main()
