"""RESULTS.md's tables are pasted from runs' own reports/summary.md, never retyped, and every
decimal figure its prose quotes must be found, rounded, in the pasted tables of its section:

    python -m tools.readme_results paste NAME path/to/reports/summary.md
    python -m tools.readme_results headline reports/summary.md
    python -m tools.readme_results check

`paste` replaces what stands between `<!-- results:NAME -->` and `<!-- /results:NAME -->`, the
summary's last line, where the run was made ("Machine: …"), included;
`headline` puts the summary's title and verdict lines into README.md's `headline:default` block;
`check` (also a test) fails on a prose figure that no table of its section holds, and on a
section that does not say which machine made its numbers.
"""
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "RESULTS.md"
README = RESULTS.with_name("README.md")
BLOCK = re.compile(r"<!-- results:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /results:(?P=name) -->", re.S)
DECIMAL = re.compile(r"(?<![\w.])[-+−]?\d+\.\d+")
MACHINE = "Machine: "  # how reports/summary.md's last line, where the run was made, begins
NOT_RECORDED = f"{MACHINE}not recorded (the pasted report does not say where it was made)."


def paste(text, name, summary_text):
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    if start not in text or end not in text:
        raise SystemExit(f"error: {RESULTS.name} has no {start} ... {end} markers")
    # Demote the summary's headings so they sit under the results file's own section.
    body = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", summary_text.strip(), flags=re.M)
    body = re.sub(r"\A#+ [^\n]*\n\n", "", body)  # its title: the section heading says it
    body = re.sub(r"^Figures: .*$", "", body, flags=re.M).strip()  # their links are relative to reports/
    if not re.search(f"^{MACHINE}", body, flags=re.M):  # a summary from before runs recorded it
        body += f"\n\n{NOT_RECORDED}"
    body = re.sub(r"\n{3,}", "\n\n", body)
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    return f"{before}{start}\n{body}\n{end}{after}"


def headline(readme_text, summary_text):
    """README's headline block: the summary's title (what was run) and its verdict bullets."""
    lines = summary_text.strip().splitlines()
    title = lines[0].lstrip("# ").strip()
    verdicts = [line for line in lines[1:] if line.startswith("- **")]
    block = "\n".join([f"*{title}*", "", *verdicts])
    start, end = "<!-- headline:default -->", "<!-- /headline:default -->"
    before, rest = readme_text.split(start, 1)
    return f"{before}{start}\n{block}\n{end}{rest.split(end, 1)[1]}"


def _number(token):
    return float(token.replace("−", "-"))


def unbacked_figures(text):
    """(section heading, figure) for each prose decimal that no pasted table of its section holds."""
    problems = []
    for section in re.split(r"(?m)^(?=## )", text):
        heading = section.splitlines()[0] if section.strip() else ""
        tables = [_number(t) for block in BLOCK.finditer(section) for t in DECIMAL.findall(block["body"])]
        prose = re.sub(r"```.*?```", "", BLOCK.sub("", section), flags=re.S)
        for token in DECIMAL.findall(prose):
            digits = len(token.split(".")[1])
            if not any(round(abs(value), digits) == round(abs(_number(token)), digits) for value in tables):
                problems.append((heading, token))
    return problems


def sections_without_machine(text):
    """The headings of the sections (`## `) that hold no "Machine: …" line."""
    sections = re.split(r"(?m)^(?=## )", text)[1:]
    return [s.splitlines()[0] for s in sections if not re.search(f"^{MACHINE}", s, flags=re.M)]


def main(argv):
    if argv[:1] == ["paste"] and len(argv) == 3:
        name, summary = argv[1], Path(argv[2])
        RESULTS.write_text(paste(RESULTS.read_text(), name, summary.read_text()))
        print(f"{RESULTS.name}: results:{name} from {summary}")
    elif argv[:1] == ["headline"] and len(argv) == 2:
        README.write_text(headline(README.read_text(), Path(argv[1]).read_text()))
        print(f"{README.name}: headline from {argv[1]}")
    elif argv == ["check"]:
        problems = unbacked_figures(RESULTS.read_text())
        for heading, figure in problems:
            print(f"error: {RESULTS.name}, {heading!r}: prose figure {figure} is in none of the section's tables")
        unplaced = sections_without_machine(RESULTS.read_text())
        for heading in unplaced:
            print(f"error: {RESULTS.name}, {heading!r}: no '{MACHINE}…' line says where its numbers were made")
        sys.exit(1 if problems or unplaced else 0)
    else:
        sys.exit("usage: python -m tools.readme_results paste NAME SUMMARY.md | headline SUMMARY.md | check")


if __name__ == "__main__":
    main(sys.argv[1:])
