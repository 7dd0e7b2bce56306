"""Setting 4, online RL (rejax TD3 and PPO on brax): ``python experiments/online_rl.py [hydra overrides]``.

The same as ``lossmooth run setting=online_rl ...``; composes conf/ and calls lossmooth.
"""
import sys

from lossmooth.app import main

if __name__ == "__main__":
    if not any(a.startswith("setting=") for a in sys.argv[1:]):
        sys.argv.append("setting=online_rl")
    main()
