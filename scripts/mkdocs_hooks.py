"""MkDocs hooks of the cnnx site (mkdocs.yml `hooks:`): pages quote the code instead of copying it.

In a page's Markdown,
    <!-- docstring: cnnx.cycles -->              becomes that module's (or object's) docstring, verbatim
    <!-- source: cnnx.cycles.conv_cycles -->     becomes that function's source code
both in fenced blocks, read from the installed package at build time: the formulas, constants and rules
on the pages are the code's, so they cannot drift from it. A name that does not import fails the build.
"""

from __future__ import annotations

import importlib
import inspect
import re

MARK = re.compile(r"<!-- (docstring|source): ([\w.]+) -->")


def _resolve(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"cannot import {name}")


def _expand(m: re.Match) -> str:
    kind, name = m.group(1), m.group(2)
    obj = _resolve(name)
    if kind == "docstring":
        text = inspect.cleandoc(obj.__doc__ or "")
        if not text:
            raise ValueError(f"{name} has no docstring")
        return f"```text\n{text}\n```"
    return f"```python\n{inspect.getsource(obj).rstrip()}\n```"


def on_page_markdown(markdown, page, config, files):
    return MARK.sub(_expand, markdown)
