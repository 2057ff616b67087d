"""Every relative link in README.md, CHANGELOG.md and docs/**/*.md points to an existing file (and, for a
link into a Markdown file with a #fragment, to one of its headings), so moving a doc cannot leave a
dangling link behind. External links (http:, https:, mailto:) are not followed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import REPO_ROOT

DOCS = sorted([REPO_ROOT / "README.md", REPO_ROOT / "CHANGELOG.md", *(REPO_ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target "title")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def links(md: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", md.read_text(encoding="utf-8")))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def anchors(md: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", md.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_the_docs_exist():
    assert (REPO_ROOT / "README.md").is_file() and (REPO_ROOT / "CHANGELOG.md").is_file()
    assert len(DOCS) > 10


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_relative_links_resolve(md):
    broken = []
    for target in links(md):
        path, _, fragment = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and dest.is_file() and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment}")
    assert not broken, f"{md.relative_to(REPO_ROOT)}: " + "; ".join(broken)
