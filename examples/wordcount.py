"""Word count: how often each word appears in a text file.

Run it with ``fastflow run examples/wordcount.py``. It reads
``examples/data/wordcount.txt`` line by line, splits the lines into
lower-case words, counts each word, and prints ``word: count`` at the end of
the input, in word order.
"""

import re
from pathlib import Path
from typing import List, Tuple

import fastflow.operators as op
from fastflow.connectors.files import FileSource
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow

TEXT = Path(__file__).parent / "data" / "wordcount.txt"


def words(line: str) -> List[str]:
    """The line's words, lower-cased and without punctuation."""
    return re.findall(r"[a-z']+", line.lower())


def show(word_count: Tuple[str, int]) -> str:
    word, count = word_count
    return f"{word}: {count}"


flow = Dataflow("wordcount")
lines = op.input("read", flow, FileSource(TEXT))
all_words = op.flat_map("split", lines, words)
counts = op.count_final("count", all_words, lambda word: word)
op.output("print", op.map("show", counts, show), StdOutSink())
