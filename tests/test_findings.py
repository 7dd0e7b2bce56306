"""The docs cannot drift from the committed tables: docs/findings.md, docs/gallery.md and the generated
blocks of the README, docs/index.md and docs/metrics.md are what lossmooth.reproduce.findings and
lossmooth.reproduce.gallery make of results/reproduce/ today."""
import csv
import os
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import build_findings  # noqa: E402

from lossmooth.errors import ConfigError  # noqa: E402
from lossmooth.reproduce import findings, gallery, quotes, registry  # noqa: E402


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


def test_the_gallery_shows_every_built_entry_with_its_files_and_names_the_rest():
    entries = registry.load()
    with open(os.path.join(ROOT, "docs", "gallery.md")) as f:
        page = f.read()
    for name, e in entries.items():
        out = e.outputs(os.path.join(ROOT, "results"))
        if os.path.exists(out["md"]):
            assert f"## {name}\n" in page and f"(reproduce/{name}.png)" in page and f"(reproduce/{name}.csv)" in page
            if "map" in out:
                assert f"(reproduce/{name}_map.png)" in page
        else:
            assert f"`{name}`" in page.split("\n## ")[0], f"{name} has no table and is not named as not run"
    # seeds and commits come from the committed files: the default's 18 seeds and the commit of its run
    default = page.split("## supervised_default\n")[1].split("\n## ")[0]
    assert "seeds per row: 18;" in default and "`f5c9cee`" in default


def test_an_entry_with_part_of_its_outputs_is_an_error_naming_it(tmp_path):
    entries = registry.load()
    (tmp_path / "reproduce").mkdir()
    e = entries["supervised_default"]
    src = e.outputs(os.path.join(ROOT, "results"))
    (tmp_path / "reproduce" / "supervised_default.md").write_text(open(src["md"]).read())
    with pytest.raises(ConfigError, match="supervised_default.*supervised_default.csv"):
        gallery.page({"supervised_default": e}, str(tmp_path), targets_csv=str(tmp_path / "none.csv"))
    # with targets, even no output at all is an error, not a silent gap
    (tmp_path / "reproduce" / "supervised_default.md").unlink()
    with pytest.raises(ConfigError, match="has targets|targets"):
        gallery.page({"supervised_default": e}, str(tmp_path))


def test_the_readme_summary_has_one_row_per_committed_table():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    block = readme[readme.index(findings.SUMMARY_BEGIN):readme.index(findings.SUMMARY_END)]
    rows = [ln for ln in block.splitlines() if ln.startswith("| ") and not ln.startswith("| entry")]
    committed = findings.committed(registry.load(), os.path.join(ROOT, "results"))
    assert [r.split(" | ")[0][2:] for r in rows] == [e.name for e, _ in committed]


def test_no_page_states_a_number_with_a_ci_outside_a_quoted_cell():
    """Numbers with a CI in the README and the docs' prose are quoted cells (filled from the committed
    tables, checked above) or sit in generated blocks: none is typed by hand."""
    typed = {}
    for path in build_findings.prose_pages():
        with open(path) as f:
            found = quotes.unquoted(f.read())
        if found:
            typed[os.path.relpath(path, ROOT)] = found
    assert not typed, f"numbers typed by hand (quote them as cells): {typed}"
    cells = sum(len(quotes.CELL.findall(open(p).read())) for p in build_findings.prose_pages())
    assert cells >= 20  # the settings' and the committed defaults' prose quote their numbers


def test_a_quoted_cell_is_rewritten_from_its_table_and_a_bad_one_is_named():
    entries = registry.load()
    results = os.path.join(ROOT, "results")
    stale = ("smoothing gains <!-- cell supervised_default kind=paired_diff,method=loss_smoothing min_acc_diff -->"
             "+99.9 [0.0, 1.0]<!-- /cell --> points")
    filled = quotes.fill(stale, entries, results)
    with open(entries["supervised_default"].outputs(results)["csv"]) as f:
        row = next(r for r in csv.DictReader(f) if r["kind"] == "paired_diff")
    want = (f"{100 * float(row['min_acc_diff']):+.1f} [{100 * float(row['min_acc_diff_lo']):.1f}, "
            f"{100 * float(row['min_acc_diff_hi']):.1f}]")
    assert f"-->{want}<!--" in filled and "+99.9" not in filled
    # a p-value is a probability: neither in percent nor signed, in an accuracy table too
    p_holm = quotes.fill("<!-- cell supervised_default kind=paired_diff,method=loss_smoothing min_acc_diff_p_holm -->"
                         "x<!-- /cell -->", entries, results)
    assert f"-->{float(row['min_acc_diff_p_holm']):.2g}<!--" in p_holm
    assert quotes.unquoted(filled) == [] and quotes.unquoted("ours 67.5 [65.2, 69.9]") == ["67.5 [65.2, 69.9]"]
    with pytest.raises(ConfigError, match="unknown entry 'nope'"):
        quotes.fill("<!-- cell nope kind=aggregate x_mean -->1<!-- /cell -->", entries, results)
    with pytest.raises(ConfigError, match="matches 0 rows"):
        quotes.fill("<!-- cell supervised_default kind=aggregate,method=replay_mix final_target_acc_mean -->"
                    "1<!-- /cell -->", entries, results)
