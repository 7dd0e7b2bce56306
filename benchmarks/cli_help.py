"""Wall time of the CLI's help: `lossmooth --help`, `lossmooth run --help` (answered before any config
is composed or JAX imported; tests/test_cli.py checks that JAX is never imported) and, for scale,
`lossmooth reproduce --help` (which loads the registry). Prints the figures, asserts nothing.

    python benchmarks/cli_help.py [--repeats 5]
"""
import argparse
import statistics
import subprocess
import sys
import time


def wall(args: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lossmooth.cli", *args], capture_output=True, check=True)
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    print("| command | median wall s | min | max |")
    print("|---|---|---|---|")
    for args in (["--help"], ["run", "--help"], ["table", "--help"], ["reproduce", "--help"]):
        ts = wall(args, a.repeats)
        print(f"| lossmooth {' '.join(args)} | {statistics.median(ts):.2f} | {min(ts):.2f} | {max(ts):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
