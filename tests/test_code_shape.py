"""The shape the style guide asks of the shared runner: no function longer than :data:`MAX_LINES`
lines (its ``def`` line to its last line, decorators and docstring included), so each piece of the
run (plan, rows, hooks, phases) reads on one screen, and the command line only parses and dispatches. A package joins :data:`PACKAGES` once it complies."""
import ast
import os

import pytest

import lossmooth

MAX_LINES = 60
ROOT = os.path.dirname(lossmooth.__file__)
PACKAGES = ["runner", "settings", "app", "reproduce", "results", "cli.py"]


def long_functions(folder: str, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function or method under ``folder`` longer than ``limit``."""
    out = []
    walk = [(os.path.dirname(folder), [], [os.path.basename(folder)])] if os.path.isfile(folder) else os.walk(folder)
    for base, _, files in walk:
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(base, name)
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > limit:
                        out.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name} ({n} lines)")
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_is_longer_than_the_limit(package):
    found = long_functions(os.path.join(ROOT, package))
    assert not found, f"functions over {MAX_LINES} lines: " + "; ".join(found)


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    found = long_functions(str(tmp_path))
    assert len(found) == 1 and " long (61 lines)" in found[0]
