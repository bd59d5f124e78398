"""Paste a run's reports/summary.md into README.md between its markers, so the README's
result tables are generated, never retyped:

    python -m tools.readme_results NAME path/to/reports/summary.md

replaces what stands between `<!-- results:NAME -->` and `<!-- /results:NAME -->`.
"""
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def insert(readme_text, name, summary_text):
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    if start not in readme_text or end not in readme_text:
        raise SystemExit(f"error: README.md has no {start} ... {end} markers")
    # Demote the summary's headings so they sit under the README's own section.
    body = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", summary_text.strip(), flags=re.M)
    body = re.sub(r"^#+ Weighted vs unweighted: summary\n\n", "", body)
    body = re.sub(r"^Figures: .*$", "", body, flags=re.M).strip()  # their links are relative to reports/
    before, rest = readme_text.split(start, 1)
    after = rest.split(end, 1)[1]
    return f"{before}{start}\n{body}\n{end}{after}"


if __name__ == "__main__":
    name, summary = sys.argv[1], Path(sys.argv[2])
    README.write_text(insert(README.read_text(), name, summary.read_text()))
    print(f"README.md: results:{name} from {summary}")
