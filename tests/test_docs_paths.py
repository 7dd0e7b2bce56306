"""The files the README and the docs name exist: every repository path written in backticks
(`lossmooth/...`, `conf/...`, `scripts/...`, ...) names a file or folder of this tree, so a moved
module or config group shows up here rather than as a stale page. Placeholders (`<name>`, `{md,csv}`,
`*`) are left aside."""
import glob
import os
import re

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PATH = re.compile(r"`((?:lossmooth|conf|benchmarks|scripts|tests|experiments|results|docs)/[^`\s]*)`")


def named_paths(text: str) -> list[str]:
    """The repository paths a page names in backticks, placeholders aside."""
    return [p.rstrip("/.,") for p in PATH.findall(text) if not any(ch in p for ch in "<>{}*")]


def test_every_path_the_docs_name_exists():
    pages = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                                                               recursive=True))
    missing = {}
    for page in pages:
        with open(page) as f:
            absent = [p for p in named_paths(f.read()) if not os.path.exists(os.path.join(ROOT, p))]
        if absent:
            missing[os.path.relpath(page, ROOT)] = sorted(set(absent))
    assert not missing, f"pages naming paths that do not exist: {missing}"


def test_placeholders_are_not_taken_for_paths():
    assert named_paths("`results/reproduce/<entry>.md` and `conf/shift/` and `lossmooth/x.py`") == [
        "conf/shift", "lossmooth/x.py"]
