"""Pull-request Markdown: the shared helper, and ``diff -o markdown`` built on it."""

from __future__ import annotations

import shutil
from pathlib import Path

from reconciler.markdown import Markdown, cell, code, code_block, escape, html
from tests.unit.helpers import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"
STATE = REPO / "tests" / "golden" / "state" / "bookinfo"


def test_inline_text_cannot_break_out_of_its_markup() -> None:
    assert cell("a|b\nc") == "a\\|b c"
    assert code("plain") == "`plain`"
    assert code("a`b") == "``a`b``"
    assert code("`x`") == "`` `x` ``"
    assert escape("*bold* <b> `x` a|b") == "\\*bold\\* \\<b\\> \\`x\\` a\\|b"
    assert html("a < b & c") == "a &lt; b &amp; c"
    # a fence is longer than any backtick run inside it
    assert code_block("x ``` y", "diff") == "````diff\nx ``` y\n````\n"
    assert code_block("x") == "```\nx\n```\n"


def test_render_keeps_whole_items_and_closes_what_it_opened() -> None:
    md = Markdown()
    md.heading(3, "title")
    md.table(["a", "b"], [[str(i), "x" * 20] for i in range(50)])
    md.details("section", [f"- item {i}\n" for i in range(50)])
    full = md.render()
    assert "Truncated" not in full
    assert full.count("| ") > 50 and "</details>" in full

    cut = md.render(500, hint="See the JSON.")
    assert len(cut) <= 500
    assert cut.startswith("### title\n\n| a | b |\n|---|---|\n| 0 |")
    lines = cut.splitlines()
    table_rows = [ln for ln in lines if ln.startswith("| ") and ln.endswith(" |")]
    assert all(ln.count("|") == 3 for ln in table_rows)  # no row cut in half
    assert cut.rstrip().endswith("entries left out to stay within 500 characters. See the JSON.")
    shown = 1 + len(table_rows) - 1  # the heading, and the rows minus the table's header
    left_out = int(cut.split("**Truncated**: ")[1].split(" of ")[0])
    assert shown + left_out == 1 + 50 + 50  # the heading, 50 rows, 50 items

    md2 = Markdown()
    md2.details("s", [f"- item {i}\n" for i in range(100)])
    cut2 = md2.render(300)
    assert len(cut2) <= 300 and cut2.count("<details>") == cut2.count("</details>") == 1


def test_diff_markdown_is_a_pull_request_comment() -> None:
    code_, out, _ = cli("diff", str(EXAMPLE), "--state", str(STATE), "-o", "markdown")
    assert code_ == 1  # against a snapshot without our objects: everything is to be created
    assert out.startswith("### mesh-reconciler diff: 5 object(s) differ\n\n")
    assert "| cluster | created | configured | pruned | unchanged | held | conflict | failed |" in out
    assert "| `mgmt-cluster` | 3 | 0 | 0 | 0 | 0 | 0 | 0 |" in out
    assert "| `remote-cluster` | 2 | 0 | 0 | 0 | 0 | 0 | 0 |" in out
    assert "<details><summary>mgmt-cluster: + 3 created</summary>" in out
    assert "<details><summary>remote-cluster: + 2 created</summary>" in out
    assert "- `+ created` `VirtualService/bookinfo/reviews`" in out
    assert (
        "  ```diff\n  --- live/VirtualService/bookinfo/reviews\n  +++ desired/VirtualService/bookinfo/reviews\n"
        in out
    )
    assert out.count("<details>") == out.count("</details>") == 2
    assert out.count("```") % 2 == 0


def test_diff_markdown_of_no_differences_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(EXAMPLE / "reconciler.yaml", empty)
    code_, out, _ = cli("diff", str(empty), "--state", str(STATE), "-o", "markdown")
    assert code_ == 0
    assert out.startswith("### mesh-reconciler diff: no differences\n")
    assert "<details>" not in out


def test_diff_keeps_its_other_formats() -> None:
    code_, out, _ = cli("diff", str(EXAMPLE), "--state", str(STATE), "-o", "yaml")
    assert code_ == 1 and out.startswith("clusters:\n- cluster: mgmt-cluster\n")
    code_, out, _ = cli("diff", str(EXAMPLE), "--state", str(STATE), "-o", "text")
    assert "cluster mgmt-cluster: + 3 created" in out
