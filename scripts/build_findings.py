"""Write every results-derived part of the docs from the committed tables (no number typed by hand):
the full Findings (docs/findings.md), their compact form on the docs home page (docs/index.md), the
criteria table (docs/metrics.md), the results gallery (docs/gallery.md: every registry entry's table,
plot and map), the README's one-row-per-entry summary, the partial pages between their markers, and
every number quoted in the prose of a page between cell markers (lossmooth.reproduce.findings,
lossmooth.reproduce.gallery, lossmooth.reproduce.quotes). Run it after `lossmooth reproduce` has
rebuilt a table; tests/test_findings.py fails when a page differs from what the committed tables give.

    python scripts/build_findings.py [--results-dir results] [--check]
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from lossmooth.errors import ConfigError  # noqa: E402
from lossmooth.reproduce import findings, gallery, quotes, registry  # noqa: E402

# pages written whole by the generator, or by a benchmark script (their numbers are its output)
GENERATED = ("findings.md", "gallery.md")
BENCHMARK_OUTPUTS = ("calibration.md", "td3bc_reference.md", "accelerator_check.md")


def _replaced(path: str, blocks: list[tuple[str, str, str]]) -> str:
    """The file's text with each (block, begin, end) put between its markers."""
    with open(path) as f:
        text = f.read()
    for block, begin, end in blocks:
        text = findings.replace_block(text, block, begin, end)
    return text


def expected(results_dir: str) -> dict[str, str]:
    """path -> the text it should have."""
    entries = registry.load()
    docs = os.path.join(ROOT, "docs")
    readme, index, metrics = (os.path.join(ROOT, "README.md"), os.path.join(docs, "index.md"),
                              os.path.join(docs, "metrics.md"))
    out = {
        os.path.join(docs, "findings.md"): findings.full(entries, results_dir),
        os.path.join(docs, "gallery.md"): gallery.page(entries, results_dir),
        readme: _replaced(readme, [(findings.readme_summary(entries, results_dir), findings.SUMMARY_BEGIN,
                                    findings.SUMMARY_END)]),
        index: _replaced(index, [(findings.compact(entries, results_dir), findings.BEGIN, findings.END)]),
        metrics: _replaced(metrics, [(findings.criteria_block(entries, results_dir), findings.CRITERIA_BEGIN,
                                      findings.CRITERIA_END)]),
    }
    # every other page: its quoted cells (numbers in the prose) rewritten from the committed tables
    for path in prose_pages():
        text = out.get(path)
        if text is None:
            with open(path) as f:
                text = f.read()
        if quotes.CELL.search(text):
            out[path] = quotes.fill(text, entries, results_dir)
    return out


def prose_pages() -> list[str]:
    """The README and every docs page not written whole by a generator or a benchmark."""
    pages = [os.path.join(ROOT, "README.md")]
    for dirpath, _, files in os.walk(os.path.join(ROOT, "docs")):
        pages += [os.path.join(dirpath, f) for f in sorted(files)
                  if f.endswith(".md") and not (dirpath == os.path.join(ROOT, "docs") and
                                                f in GENERATED + BENCHMARK_OUTPUTS)]
    return sorted(pages)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results-dir", default=os.path.join(ROOT, "results"))
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    a = p.parse_args(argv)
    stale = []
    try:
        pages = expected(a.results_dir)
    except (ConfigError, ValueError) as e:
        print(f"build_findings: error: {e}", file=sys.stderr)
        return 2
    for path, text in pages.items():
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
        print("stale: " + ", ".join(stale) if stale else "docs results up to date")
        return 1 if stale else 0
    print("wrote " + ", ".join(stale) if stale else "docs results already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
