"""The Python examples in docs/*.md run, and print exactly what the page shows.

Conventions for the pages:

- Every fenced block whose info string is ``python`` runs. The blocks of a
  page run in order, in one namespace (later blocks use earlier imports), in a
  fresh interpreter whose working directory is an empty temporary directory.
- The ``text`` block right after a ``python`` block (nothing but blank lines
  between them) is the exact output of that block; a ``python`` block without
  one must print nothing.
- A block that is not meant to run (a fragment, or one that needs files the
  page does not make) is marked ``python no-run``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

# Runs the blocks it reads (JSON) from stdin; prints (JSON) what each printed.
_RUNNER = """
import contextlib, io, json, sys, traceback
namespace = {"__name__": "__main__"}
printed = []
for index, code in enumerate(json.load(sys.stdin)):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"<python block {index + 1}>", "exec"), namespace)
    except BaseException:
        printed.append({"error": traceback.format_exc(), "printed": out.getvalue()})
        break
    printed.append({"printed": out.getvalue()})
json.dump(printed, sys.__stdout__)
"""


class Block(NamedTuple):
    line: int
    code: str
    expected: str


def python_blocks(text: str) -> List[Block]:
    """The page's runnable blocks, each with the output it must print."""
    fences = list(_FENCE.finditer(text))
    blocks = []
    for fence, after in zip(fences, [*fences[1:], None], strict=True):
        if fence.group(1).split() != ["python"]:
            continue
        expected = ""
        if _is_output(text, fence.end(), after):
            assert after is not None
            expected = after.group(2)
        blocks.append(Block(text.count("\n", 0, fence.start()) + 1, fence.group(2), expected))
    return blocks


def _is_output(text: str, end: int, after: Optional[re.Match]) -> bool:
    return (
        after is not None
        and after.group(1).strip() == "text"
        and not text[end : after.start()].strip()
    )


def run_blocks(blocks: List[Block], cwd: Path) -> List[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps([b.code for b in blocks]),
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_examples_run_and_print_what_the_page_shows(page: Path, tmp_path: Path) -> None:
    blocks = python_blocks(page.read_text())
    results = run_blocks(blocks, tmp_path)
    for block, result in zip(blocks, results, strict=False):
        where = f"{page.name}, the python block at line {block.line}"
        assert "error" not in result, f"{where} raised:\n{result['error']}"
        assert result["printed"] == block.expected, f"{where} printed something else"
    assert len(results) == len(blocks)


def test_the_block_finder() -> None:
    page = (
        "```python\nprint(1)\n```\n\n```text\n1\n```\n"
        "```python no-run\nskipped\n```\n"
        "```python\nx = 2\n```\nprose\n```text\nnot output\n```\n"
    )
    assert python_blocks(page) == [Block(1, "print(1)\n", "1\n"), Block(11, "x = 2\n", "")]
