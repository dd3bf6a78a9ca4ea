"""GitHub-flavoured Markdown for pull-request comments, capped in size (``impact`` and ``diff``).

A comment is a list of blocks (a heading, a table, a collapsible ``<details>`` section); a block is a
head, items and a tail (a table's header, its rows, nothing). :meth:`Markdown.render` keeps blocks
and items in order until the next would pass the limit, then closes the open block and says what was
left out — so a truncated comment is still valid Markdown with every section it shows intact.
GitHub refuses comments longer than 65,536 characters; the default limit leaves room below that.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

DEFAULT_LIMIT = 60_000
"""Characters; GitHub's comment limit is 65,536 (GitLab's is 1,000,000)."""


def cell(text: str) -> str:
    """Text safe inside a table cell: no pipe or line break ends it."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def code(text: str) -> str:
    """Inline code that survives backticks in ``text``."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_block(text: str, language: str = "") -> str:
    """A fenced block longer than any backtick run inside ``text``."""
    run, fence = 0, 3
    for ch in text:
        run = run + 1 if ch == "`" else 0
        fence = max(fence, run + 1)
    ticks = "`" * fence
    return f"{ticks}{language}\n{text.rstrip(chr(10))}\n{ticks}\n"


def escape(text: str) -> str:
    """Plain text in Markdown: emphasis, code, HTML and table characters are escaped."""
    out = text.replace("\\", "\\\\")
    for ch in "`*_<>|":
        out = out.replace(ch, "\\" + ch)
    return out


def html(text: str) -> str:
    """Text inside an HTML element (a ``<summary>``): only ``&``, ``<`` and ``>`` are special."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class Block:
    head: str = ""
    items: list[str] = field(default_factory=list)
    tail: str = ""

    def text(self) -> str:
        return self.head + "".join(self.items) + self.tail


class Markdown:
    """A comment being built; :meth:`render` returns it within ``limit`` characters."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []

    def paragraph(self, text: str) -> None:
        self.blocks.append(Block(head=text.rstrip("\n") + "\n\n"))

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(Block(head=f"{'#' * level} {text}\n\n"))

    def bullets(self, items: Iterable[str]) -> None:
        self.blocks.append(Block(items=[f"- {i}\n" for i in items], tail="\n"))

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        head = "| " + " | ".join(headers) + " |\n|" + "---|" * len(headers) + "\n"
        self.blocks.append(Block(head=head, items=["| " + " | ".join(r) + " |\n" for r in rows], tail="\n"))

    def details(self, summary: str, items: Iterable[str], *, open_: bool = False) -> None:
        """A collapsible section; each item is a Markdown chunk (kept whole or left out)."""
        opening = "<details open>" if open_ else "<details>"
        self.blocks.append(
            Block(
                head=f"{opening}<summary>{summary}</summary>\n\n",
                items=[i if i.endswith("\n") else i + "\n" for i in items],
                tail="\n</details>\n\n",
            )
        )

    def render(self, limit: int = DEFAULT_LIMIT, *, hint: str = "") -> str:
        """The comment, at most ``limit`` characters (``hint``: where the whole report is)."""
        full = "".join(b.text() for b in self.blocks)
        if len(full) <= limit:
            return full
        total_items = sum(max(1, len(b.items)) for b in self.blocks)

        def note(left_out: int) -> str:
            where = f" {hint}" if hint else ""
            return (
                f"\n> **Truncated**: {left_out} of {total_items} entries left out to stay within "
                f"{limit:,} characters.{where}\n"
            )

        reserve = len(note(total_items))
        budget = max(0, limit - reserve)
        out: list[str] = []
        used = shown = 0
        for block in self.blocks:
            fixed = len(block.head) + len(block.tail)
            if used + fixed > budget:
                break
            if not block.items:
                out.append(block.head + block.tail)
                used += fixed
                shown += 1
                continue
            kept: list[str] = []
            size = used + fixed
            for item in block.items:
                if size + len(item) > budget:
                    break
                kept.append(item)
                size += len(item)
            if not kept:
                break
            out.append(block.head + "".join(kept) + block.tail)
            used = size
            shown += len(kept)
            if len(kept) < len(block.items):
                break
        return "".join(out) + note(total_items - shown)
