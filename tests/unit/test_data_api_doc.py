"""The project documents the Data API behaviour it relies on itself, in docs/data-api.md.

The code, the emulator and the docs cite that page (by section), never research notes
kept outside the repository; each cited section exists; the README links the page; and
the assumptions the emulator implements are the numbered list the page marks as such.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "data-api.md"
#: the places that ship with the project, and their text files
TREES = ("connector", "docs", "helm", "dev", "tests", "bench")
FILES = ("README.md", "Makefile", "Dockerfile", "pyproject.toml")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".json", ".tpl", ".txt", ".toml", ".sh", ""}
#: what points outside the project (spelt in pieces, so this file does not cite it)
OUTSIDE = re.compile(
    "|".join(("shared/" + "LEARNOSITY", "shared/" + "DESIGN", r"\.\./" + "shared"))
)
#: `docs/data-api.md, "Section"` or `docs/data-api.md ("Section")`
CITATION = re.compile(r'docs/data-api\.md(?:,\s*|\s*\()"([^"]+)"')


def project_files() -> list[Path]:
    paths = [REPO / name for name in FILES if (REPO / name).exists()]
    for tree in TREES:
        paths += [
            path
            for path in (REPO / tree).rglob("*")
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts
        ]
    return sorted(paths)


def headings() -> set[str]:
    text = PAGE.read_text(encoding="utf-8")
    return {h.replace("`", "").strip() for h in re.findall(r"^#{2,6} (.+)$", text, re.M)}


def test_nothing_cites_notes_outside_the_project() -> None:
    citing = []
    for path in project_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                citing.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not citing, "cite docs/data-api.md instead:\n" + "\n".join(citing)


def test_every_cited_section_of_the_page_exists() -> None:
    sections = headings()
    cited: dict[str, list[str]] = {}
    for path in project_files():
        if path == Path(__file__).resolve():
            continue  # its own examples
        text = path.read_text(encoding="utf-8", errors="replace")
        for title in CITATION.findall(re.sub(r"\s+", " ", text)):
            cited.setdefault(title.replace("`", ""), []).append(str(path.relative_to(REPO)))
    assert len(cited) >= 3, f"the code cites the page's sections: found {cited}"
    unknown = {title: where for title, where in cited.items() if title not in sections}
    assert not unknown, f"cited sections docs/data-api.md does not have: {unknown}"


def test_the_readme_links_the_page_and_the_page_marks_its_assumptions() -> None:
    assert "docs/data-api.md" in (REPO / "README.md").read_text(encoding="utf-8")
    text = PAGE.read_text(encoding="utf-8")
    assumptions = text.split("\n## Assumptions\n", 1)[1]
    assert "The documentation is silent on these" in assumptions
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", assumptions, re.M)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 5, numbers
    # the emulator's "assumption N" comments name items of that list
    for path in (REPO / "connector" / "emulator").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        for first, second in re.findall(r"assumptions? (\d+)(?: and (\d+))?", source):
            for number in filter(None, (first, second)):
                assert int(number) in numbers, f"{path.name}: assumption {number}"


def test_the_citation_pattern_reads_both_forms() -> None:
    """The control for the tests above."""
    found = CITATION.findall('see docs/data-api.md, "Rate limits" and docs/data-api.md ("A b")')
    assert found == ["Rate limits", "A b"]
    assert OUTSIDE.search("../" + "shared/x") and not OUTSIDE.search("docs/data-api.md")
