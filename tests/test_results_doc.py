"""RESULTS.md: pasted tables, and prose figures that must be found in them."""
from tools.readme_results import NOT_RECORDED, RESULTS, paste, sections_without_machine, unbacked_figures

SECTION = """## A run

<!-- results:run -->
| metric | mean | interval |
|---|---|---|
| minority_recall | +0.2860 | [+0.2291, +0.3428] |
<!-- /results:run -->

Weighting raises minority recall by {figure} (interval 0.23 to 0.34).
"""


def test_every_prose_figure_of_the_committed_results_file_is_in_its_tables():
    assert unbacked_figures(RESULTS.read_text()) == []


def test_every_section_of_the_committed_results_file_says_where_it_was_made():
    assert sections_without_machine(RESULTS.read_text()) == []
    assert sections_without_machine("# R\n\n## 1. A\n\nMachine: x\n\n## 2. B\n\ntext\n") == ["## 2. B"]


def test_paste_keeps_the_summarys_machine_line_and_marks_a_summary_without_one():
    text = "<!-- results:x -->\nold\n<!-- /results:x -->\n"
    summary = "# T\n\n**v**\n\nFigures: [f](f.png)\n\nMachine: AMD EPYC with avx2; 2 cores.\n"
    assert paste(text, "x", summary) == "<!-- results:x -->\n**v**\n\nMachine: AMD EPYC with avx2; 2 cores.\n<!-- /results:x -->\n"
    old = "# T\n\n**v**\n\nFigures: [f](f.png)\n"
    assert paste(text, "x", old) == f"<!-- results:x -->\n**v**\n\n{NOT_RECORDED}\n<!-- /results:x -->\n"


def test_a_figure_rounded_from_the_table_passes_and_a_drifted_one_is_named():
    assert unbacked_figures(SECTION.format(figure="0.29")) == []
    assert unbacked_figures(SECTION.format(figure="+0.286")) == []
    assert unbacked_figures(SECTION.format(figure="0.30")) == [("## A run", "0.30")]
    assert unbacked_figures(SECTION.format(figure="0.2861")) == [("## A run", "0.2861")]


def test_a_figure_only_in_another_sections_table_does_not_count():
    other = "## Another run\n\nIt moved by 0.29.\n"
    assert unbacked_figures(SECTION.format(figure="0.29") + other) == [("## Another run", "0.29")]


def test_paste_replaces_the_block_and_demotes_the_summary_headings():
    text = "# R\n<!-- results:x -->\nold\n<!-- /results:x -->\nafter\n"
    summary = "# Title of the run\n\n**verdict**\n\n## Test metrics\n\n| a |\n\nFigures: [f](f.png)\n"
    pasted = paste(text, "x", summary)
    assert pasted == ("# R\n<!-- results:x -->\n**verdict**\n\n#### Test metrics\n\n| a |\n\n"
                      f"{NOT_RECORDED}\n<!-- /results:x -->\nafter\n")


def test_headline_takes_the_title_and_the_verdict_lines():
    from tools.readme_results import headline

    readme = "# P\n<!-- headline:default -->\nold\n<!-- /headline:default -->\nrest\n"
    summary = "# mnist-sample, step\n\n- **a: +0.1 → better**\n- **b: -0.2 → worse**\n\nMore text.\n"
    assert headline(readme, summary) == ("# P\n<!-- headline:default -->\n*mnist-sample, step*\n\n"
                                         "- **a: +0.1 → better**\n- **b: -0.2 → worse**\n<!-- /headline:default -->\nrest\n")
