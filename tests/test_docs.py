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
- A ``python file=NAME`` block is not run but written to ``NAME`` in that
  directory, for the page's ``console run`` blocks: each ``$ COMMAND`` line of those
  runs (after the page's python blocks, in order, in the same directory, with the
  ``fastflow`` command on the ``PATH`` and no ``FASTFLOW_*``/``BYTEWAX_*``
  variables), and the lines after it are its exact output, stdout and stderr
  together.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

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


def file_blocks(text: str) -> Dict[str, str]:
    """The page's ``python file=NAME`` blocks: the files its console blocks use."""
    files = {}
    for fence in _FENCE.finditer(text):
        words = fence.group(1).split()
        if words[:1] == ["python"] and words[1:2] and words[1].startswith("file="):
            files[words[1][len("file="):]] = fence.group(2)
    return files


def console_commands(text: str) -> List[Block]:
    """Each ``$ COMMAND`` of the page's ``console run`` blocks, with the output after it."""
    commands = []
    for fence in _FENCE.finditer(text):
        if fence.group(1).split() != ["console", "run"]:
            continue
        first_line = text.count("\n", 0, fence.start()) + 2
        lines = fence.group(2).splitlines(keepends=True)
        starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
        for start, end in zip(starts, [*starts[1:], len(lines)], strict=True):
            commands.append(Block(first_line + start, lines[start][2:].rstrip("\n"),
                                  "".join(lines[start + 1 : end])))
    return commands


def run_console(command: Block, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTFLOW_", "BYTEWAX_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(["bash", "-c", command.code], cwd=cwd, env=env, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.stdout


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


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_console_examples_print_what_the_page_shows(page: Path, tmp_path: Path) -> None:
    text = page.read_text()
    for name, code in file_blocks(text).items():
        (tmp_path / name).write_text(code)
    for command in console_commands(text):
        where = f"{page.name}, `$ {command.code}` at line {command.line}"
        assert run_console(command, tmp_path) == command.expected, where


def test_the_block_finder() -> None:
    page = (
        "```python\nprint(1)\n```\n\n```text\n1\n```\n"
        "```python no-run\nskipped\n```\n"
        "```python\nx = 2\n```\nprose\n```text\nnot output\n```\n"
    )
    assert python_blocks(page) == [Block(1, "print(1)\n", "1\n"), Block(11, "x = 2\n", "")]


def test_the_console_command_finder() -> None:
    page = (
        "```python file=f.py\nprint(1)\n```\n"
        "```console run\n$ fastflow run f.py\n1\n$ true\n```\n"
        "```console\n$ not run\n```\n"
    )
    assert file_blocks(page) == {"f.py": "print(1)\n"}
    assert python_blocks(page) == []
    assert console_commands(page) == [Block(5, "fastflow run f.py", "1\n"), Block(7, "true", "")]

