"""Write the Findings from the committed tables: the full text to docs/findings.md and the compact one
into README.md between its findings markers (lossmooth.reproduce.findings). Run it after
`lossmooth reproduce --check` has rebuilt the tables; tests/test_findings.py fails when either file
differs from what the committed tables give.

    python scripts/build_findings.py [--results-dir results] [--check]
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from lossmooth.reproduce import findings, registry  # noqa: E402


def expected(results_dir: str) -> dict[str, str]:
    """path -> the text it should have."""
    entries = registry.load()
    readme = os.path.join(ROOT, "README.md")
    with open(readme) as f:
        text = f.read()
    text = findings.replace_block(text, findings.compact(entries, results_dir))
    text = findings.replace_block(text, findings.criteria_block(entries, results_dir),
                                  findings.CRITERIA_BEGIN, findings.CRITERIA_END)
    return {os.path.join(ROOT, "docs", "findings.md"): findings.full(entries, results_dir), readme: text}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results-dir", default=os.path.join(ROOT, "results"))
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    a = p.parse_args(argv)
    stale = []
    for path, text in expected(a.results_dir).items():
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            stale.append(os.path.relpath(path, ROOT))
            if not a.check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = path + ".tmp"
                with open(tmp, "w") as f:
                    f.write(text)
                os.replace(tmp, path)
    if a.check:
        print("stale: " + ", ".join(stale) if stale else "findings up to date")
        return 1 if stale else 0
    print("wrote " + ", ".join(stale) if stale else "findings already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
