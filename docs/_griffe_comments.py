"""Griffe extension for the API pages (loaded from mkdocs.yml; not a page: excluded there).

The package documents its constants the Sphinx way, with ``#:`` comments on the lines just
above the assignment::

    #: Mean radius of the Earth in metres (IUGG mean radius R1).
    EARTH_RADIUS = 6_371_008.8

Griffe reads only a string literal *below* an assignment as its docstring, so without this
extension mkdocstrings leaves every such constant out of a module rendered whole. Here the
comment block becomes the docstring of an attribute that has none.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe


class SphinxComments(griffe.Extension):
    """``#:`` comment lines right above an attribute's assignment are its docstring."""

    def on_attribute_instance(self, *, node: ast.AST | griffe.ObjectNode,
                              attr: griffe.Attribute, agent: griffe.Visitor | griffe.Inspector,
                              **kwargs: Any) -> None:
        if (attr.docstring is not None or not isinstance(node, ast.AST) or not attr.lineno
                or not isinstance(agent, griffe.Visitor)):
            return
        lines = agent.code.splitlines()  # the module's source, as visited
        first = attr.lineno - 1  # 0-based index of the assignment line
        while first > 0 and lines[first - 1].lstrip().startswith("#:"):
            first -= 1
        comment = [lines[k].lstrip()[2:].removeprefix(" ") for k in range(first, attr.lineno - 1)]
        if comment:
            attr.docstring = griffe.Docstring(
                "\n".join(comment), lineno=first + 1, endlineno=attr.lineno - 1, parent=attr,
                parser=getattr(agent, "docstring_parser", None),
                parser_options=getattr(agent, "docstring_options", None),
            )
