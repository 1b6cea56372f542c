"""Reading the project's own source as syntax trees, for tests that check rules across the code."""

import ast
import gc
from pathlib import Path


def parse_module(path: Path) -> ast.Module:
    """`ast.parse` with the garbage collector held off. CPython 3.11.7 raises "AST constructor recursion depth
    mismatch" when a collection runs a finalizer (a leftover asyncio task logging that it was destroyed) in the
    middle of building the tree, which failed an unrelated test once."""
    source = path.read_text()
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if enabled:
            gc.enable()
