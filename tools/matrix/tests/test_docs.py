"""The documentation holds together: every relative link of README.md, of docs/*.md and of every
markdown file they link to resolves to a file of the repository and, with a #fragment, to a heading
of that file (as GitHub makes its anchors); every file of docs/ can be reached from README.md.

It reads the working tree itself (the docs and whatever they link to are not inputs Bazel knows),
so its BUILD target is tagged `external`: never cached, always run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]  # the repository (under Bazel too: runfiles link to the sources)
README = ROOT / "README.md"
MAX_README_LINES = 300  # issue #23: the README is the front page; the manual lives in docs/
RECIPE = "```python\n# my_project/variants.py"  # tools/remote/integration_test.py runs this block of the README

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1")
LINK = re.compile(r"\[(?:[^\]\\]|\\.)*\]\(([^()\s]+)\)")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fence = [], ""
    for number, line in enumerate(text.splitlines(), 1):
        if fence:  # a closing fence: the same character, at least as many, nothing else
            fence = "" if len(line.strip()) >= len(fence) and set(line.strip()) == {fence[0]} else fence
        elif opening := FENCE.match(line):
            fence = opening.group(1)
        else:
            lines.append((number, line))
    return lines


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of each inline link outside code."""
    return [(number, m.group(1)) for number, line in prose_lines(text) for m in LINK.finditer(CODE_SPAN.sub("", line))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text (links as their text, no code marks), lower case,
    punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    for _, line in prose_lines(text):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(1))
            anchor, n = base, 0
            while anchor in found:  # GitHub numbers repeated headings: x, x-1, x-2
                n += 1
                anchor = f"{base}-{n}"
            found.add(anchor)
    return found


def problems_of(doc: Path) -> tuple[list[str], list[Path]]:
    """What is wrong with `doc`'s links, and the markdown files it links to."""
    problems, linked = [], []
    where = doc.relative_to(ROOT)
    for number, target in links(doc.read_text()):
        if EXTERNAL.match(target):
            continue
        path, _, fragment = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            problems.append(f"{where}:{number}: {target}: no such file in the repository")
            continue
        if resolved.suffix == ".md":
            linked.append(resolved)
        if fragment and (resolved.suffix != ".md" or fragment not in anchors(resolved.read_text())):
            problems.append(f"{where}:{number}: {target}: no heading #{fragment} in {resolved.relative_to(ROOT)}")
    return problems, linked


def reachable_docs() -> tuple[list[Path], list[str]]:
    """Every markdown file reachable from README.md by links, and every broken link on the way."""
    seen, todo, problems = [README], [README], []
    while todo:
        found, linked = problems_of(todo.pop())
        problems += found
        for doc in linked:
            if doc not in seen:
                seen.append(doc)
                todo.append(doc)
    return seen, problems


def test_every_link_resolves_to_a_file_and_a_heading() -> None:
    docs, problems = reachable_docs()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        if doc not in docs:  # not reachable, so not checked either
            problems += problems_of(doc)[0]
    assert problems == []
    assert {README, ROOT / "bench" / "README.md", ROOT / "tools" / "matrix" / "report" / "README.md"} <= set(docs)


def test_every_doc_is_reachable_from_the_readme() -> None:
    docs, _ = reachable_docs()
    assert [str(d.relative_to(ROOT)) for d in sorted((ROOT / "docs").glob("*.md")) if d not in docs] == []


def test_the_readme_is_a_front_page() -> None:
    text = README.read_text()
    lines = len(text.splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines: move the manual's sections into docs/ and link them"
    assert RECIPE in text, "the plug-in recipe the remote integration test runs"


# The checker itself, on markdown written here.
SAMPLE = """# Title
## `user.bazelrc` for each kind of service
## A suite's own pytest configuration
## pytest_args
## Is it working?
## Is it working?
See [x](#title), [y](#is-it-working-1) and `[not](a-link.md)`.
```sh
[not a link](nowhere.md)
```
[ext](https://example.com/a.md) [mail](mailto:a@b.c)
"""


def test_anchors_are_githubs() -> None:
    assert anchors(SAMPLE) == {"title", "userbazelrc-for-each-kind-of-service", "a-suites-own-pytest-configuration", "pytest_args",
                               "is-it-working", "is-it-working-1"}  # fmt: skip


def test_links_skip_code_and_keep_line_numbers() -> None:
    assert links(SAMPLE) == [(7, "#title"), (7, "#is-it-working-1"), (11, "https://example.com/a.md"), (11, "mailto:a@b.c")]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[a](missing.md)", "doc.md:1: missing.md: no such file in the repository"),
        ("[a](#nowhere)", "doc.md:1: #nowhere: no heading #nowhere in doc.md"),
        ("[a](../../../../outside.md)", "doc.md:1: ../../../../outside.md: no such file in the repository"),
        ("[a](README.md#no-such-heading)", "doc.md:1: README.md#no-such-heading: no heading #no-such-heading in README.md"),
        ("[a](tools/matrix/records.py#L1)", "doc.md:1: tools/matrix/records.py#L1: no heading #L1 in tools/matrix/records.py"),
    ],
)
def test_a_broken_link_is_named_with_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, problem: str) -> None:
    root = tmp_path.resolve()
    (root / "README.md").write_text("# Front\n")
    (root / "tools" / "matrix").mkdir(parents=True)
    (root / "tools" / "matrix" / "records.py").write_text("")
    (root / "doc.md").write_text(text + "\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", root)
    assert problems_of(root / "doc.md")[0] == [problem]
