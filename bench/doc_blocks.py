"""Generated blocks inside Markdown documents: the text between two HTML-comment markers is rendered
from a recorded result by a bench command, so a document never carries a number typed by hand."""

from __future__ import annotations


def replace_between(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with everything from ``begin`` to ``end`` (markers included) replaced by ``block``."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"no block {begin} ... {end} to replace")
    return text[:start] + block + text[stop + len(end) :]
