"""Griffe extension for the API reference: a docstring's doctest blocks (``>>>`` lines and their output,
up to a blank line) are shown as Python console code, not read as Markdown (whose ``[a, b]`` would be
taken for a link)."""
from __future__ import annotations

import griffe


def fence(text: str) -> str:
    """``text`` with each doctest block fenced as ```` ```pycon ````."""
    out, inside = [], False
    for line in text.split("\n"):
        starts = line.lstrip().startswith(">>>")
        if starts and not inside:
            out.append("```pycon")
            inside = True
        elif inside and not line.strip():
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence(obj.docstring.value)
