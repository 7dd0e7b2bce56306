"""The Findings cannot drift from the committed tables: docs/findings.md and the README's generated
blocks are what lossmooth.reproduce.findings makes of results/reproduce/*.csv today."""
import os
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import build_findings  # noqa: E402

from lossmooth.reproduce import findings  # noqa: E402


def test_the_committed_findings_are_what_the_committed_tables_give():
    for path, text in build_findings.expected(os.path.join(ROOT, "results")).items():
        with open(path) as f:
            assert f.read() == text, f"{os.path.relpath(path, ROOT)} is stale: run python scripts/build_findings.py"


def test_every_claim_names_its_n_procedure_and_adjusted_p():
    with open(os.path.join(ROOT, "docs", "findings.md")) as f:
        text = f.read()
    assert "Holm-adjusted exact sign-flip p" in text and "Benjamini-Hochberg" in text
    claims = [ln for ln in text.splitlines() if ": resolved, " in ln]
    assert claims and all("p_Holm" in ln for ln in claims)
    # every direction is reported, the hard switch's included
    assert "favours the hard switch" in text or "the hard switch:" in text


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="no markers"):
        findings.replace_block("no markers here", "x")
