"""The docs a newcomer walks: every relative link in the README, docs/ and perf/ leads to a file
that exists (and a #fragment to one of its headings), and the guides stay short enough to read."""

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [ROOT / "README.md", ROOT / "client" / "README.md", ROOT / "perf" / "README.md", *ROOT.glob("docs/**/*.md")]
)
PARSER = MarkdownIt("commonmark").enable("table")


def tokens(path: Path):
    for token in PARSER.parse(path.read_text()):
        yield token
        yield from token.children or []


def links(path: Path) -> list[str]:
    found = []
    for token in tokens(path):
        if token.type in ("link_open", "image"):
            found.append(str(token.attrs.get("href") or token.attrs.get("src")))
    return found


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found, inline = set(), False
    for token in PARSER.parse(path.read_text()):
        if token.type == "heading_open":
            inline = True
        elif inline and token.type == "inline":
            found.add(re.sub(r"[^\w\- ]", "", token.content.lower()).replace(" ", "-"))
            inline = False
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_relative_link_leads_somewhere(doc):
    broken = []
    for href in links(doc):
        if re.match(r"[a-z]+:", href):  # another site: not checked offline
            continue
        target, _, fragment = href.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(f"{href}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{href}: no heading #{fragment}")
    assert not broken, f"{doc.relative_to(ROOT)}: {broken}"


def test_the_guides_are_short_and_the_topics_have_rooms():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    assert len((ROOT / "perf" / "README.md").read_text().splitlines()) <= 120
    readme = links(ROOT / "README.md")
    for topic in ("architecture", "avatars", "conversations", "operations", "security", "testing"):
        assert f"docs/{topic}.md" in readme  # each topic's room is reachable from the README
    dated = {Path(href).name for href in links(ROOT / "perf" / "README.md") if "docs/perf/" in href}
    assert dated == {p.name for p in (ROOT / "docs" / "perf").glob("*.md")}  # every dated run is listed
