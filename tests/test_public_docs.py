"""Every public name of the package is documented in the API reference, with a docstring.

A public module is one of ``tracerbayes`` whose dotted path has no part starting with ``_``;
its public names are its ``__all__`` (a module without one exports nothing checked here).
A name counts as documented in ``docs/api/*.md`` when mkdocstrings renders it there:

* ``::: module`` renders the module and every name of its ``__all__`` that has a docstring
  as griffe reads it (mkdocstrings leaves out the others; ``docs/_griffe_comments.py`` makes
  the ``#:`` comment above a constant its docstring), unless the directive's
  ``options: members`` narrows or turns that off; a name listed there is rendered anyway;
* ``::: module.Name`` renders the one object;
* an object re-exported under several paths is documented once for all: ``tracerbayes.Grid``
  counts as documented where ``tracerbayes.grid.core`` is rendered whole, and a module
  (``tracerbayes.basis``) where a directive renders it under its own name
  (``::: tracerbayes.grid.basis``);
* failing those, a name written as code in an API page's prose (```Name``` or
  ```module.Name```) counts: a constant described in words.

The Markdown is read statically and the package through griffe, as mkdocstrings reads it: no
site is built (``tests/test_docs.py`` does that).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import pkgutil
import re
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import tracerbayes

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))
#: Modules that need optional plotting libraries to import.
NEEDS = {"tracerbayes.plot": ("matplotlib", "cartopy")}


def _public_modules() -> list[str]:
    found = pkgutil.walk_packages(tracerbayes.__path__, prefix="tracerbayes.")
    names = [m.name for m in found if not any(p.startswith("_") for p in m.name.split("."))]
    return ["tracerbayes", *sorted(names)]


PUBLIC_MODULES = _public_modules()


def _import(name: str) -> ModuleType:
    for needed in NEEDS.get(name, ()):
        pytest.importorskip(needed)
    return importlib.import_module(name)


def _public(module: ModuleType) -> dict[str, Any]:
    return {name: getattr(module, name) for name in getattr(module, "__all__", ())}


@dataclasses.dataclass
class Directive:
    """One ``::: target`` block of a page: what it renders."""

    target: str
    members: list[str] | None  # names its options restrict rendering to; None: all of __all__


def _directive(target: str, block: list[str]) -> Directive:
    settings = yaml.safe_load(textwrap.dedent("\n".join(block))) or {}
    members = (settings.get("options") or {}).get("members")
    return Directive(target, None if members in (None, True) else list(members or ()))


def _read_page(text: str) -> tuple[list[Directive], set[str]]:
    """The page's ``:::`` directives, and the inline code spans of its prose (neither a
    directive's indented options nor fenced code)."""
    directives: list[Directive] = []
    prose: list[str] = []
    lines = text.splitlines()
    fenced, k = False, 0
    while k < len(lines):
        line, k = lines[k], k + 1
        if line.startswith("```"):
            fenced = not fenced
            continue
        found = None if fenced else re.match(r":::\s+(\S+)\s*$", line)
        if found is None:
            if not fenced:
                prose.append(line)
            continue
        block = []
        while k < len(lines) and (not lines[k].strip() or lines[k][:1] in (" ", "\t")):
            block.append(lines[k])
            k += 1
        directives.append(_directive(found[1], block))
    return directives, set(re.findall(r"`([^`\n]+)`", "\n".join(prose)))


@functools.cache
def _griffe_package() -> Any:
    griffe = pytest.importorskip("griffe")
    extensions = griffe.load_extensions(str(ROOT / "docs" / "_griffe_comments.py"))
    return griffe.load("tracerbayes", search_paths=[str(ROOT)], extensions=extensions)


def _has_docstring(module: str, name: str) -> bool:
    """Whether griffe finds a docstring for ``name`` of ``module`` (so that mkdocstrings shows
    it when the module is rendered whole)."""
    import griffe

    package = _griffe_package()
    try:
        found = package if module == "tracerbayes" else package[module.split(".", 1)[1]]
        return bool(found[name].docstring)
    except (KeyError, griffe.GriffeError):  # not found statically, or an unresolvable alias
        return False


@pytest.fixture(scope="module")
def documented() -> tuple[set[tuple[str, str]], set[str], set[str]]:
    """(module, name) pairs rendered, directive targets, and code spans of the API pages."""
    pairs: set[tuple[str, str]] = set()
    targets: set[str] = set()
    spans: set[str] = set()
    for page in API_PAGES:
        directives, code = _read_page(page.read_text(encoding="utf-8"))
        spans |= code
        for directive in directives:
            targets.add(directive.target)
            if directive.target in PUBLIC_MODULES:
                if directive.members is None:
                    names = getattr(importlib.import_module(directive.target), "__all__", ())
                    shown = [n for n in names if _has_docstring(directive.target, n)]
                else:
                    shown = directive.members
                pairs |= {(directive.target, name) for name in shown}
            else:
                module, _, name = directive.target.rpartition(".")
                pairs.add((module, name))
    return pairs, targets, spans


def _canonical(obj: Any) -> str | None:
    """Where the object is defined: a module's name, a class's or function's full path."""
    if inspect.ismodule(obj):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    return None


def _rendered_elsewhere(name: str, obj: Any, pairs: set[tuple[str, str]]) -> bool:
    """The same object, under the same name, is rendered from another public module."""
    for module, shown in pairs:
        if shown != name or module not in PUBLIC_MODULES:
            continue
        other = importlib.import_module(module)
        if getattr(other, shown, None) is obj:
            return True
    return False


def test_api_pages_exist():
    assert API_PAGES, "docs/api/ holds no pages"
    targets = [d.target for page in API_PAGES for d in _read_page(page.read_text("utf-8"))[0]]
    assert "tracerbayes.fit" in targets  # the parser sees the directives


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_are_documented(module_name, documented):
    pairs, targets, spans = documented
    module = _import(module_name)
    missing = []
    for name, obj in _public(module).items():
        if ((module_name, name) in pairs or _canonical(obj) in targets
                or _rendered_elsewhere(name, obj, pairs)
                or {name, f"{module_name}.{name}"} & spans):
            continue
        missing.append(name)
    assert not missing, (
        f"{module_name}: public names (in __all__) not in the API reference: {missing}. Render "
        f"them in docs/api/*.md (`::: {module_name}` for the whole module, or "
        f"`::: {module_name}.NAME`), or drop them from __all__."
    )


def _docstring_missing(obj: Any) -> bool:
    """No docstring of its own, or only the one dataclasses or NamedTuple write."""
    doc = inspect.getdoc(obj) if inspect.ismodule(obj) else obj.__doc__
    if not (doc and doc.strip()):
        return True
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            return True
        fields = getattr(obj, "_fields", None)
        if fields is not None and doc == f"{obj.__name__}({', '.join(fields)})":
            return True
    return False


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_objects_have_docstrings(module_name):
    module = _import(module_name)
    lacking = [name for name, obj in _public(module).items()
               if (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj))
               and _docstring_missing(obj)]
    if _docstring_missing(module):
        lacking.insert(0, "(the module itself)")
    assert not lacking, f"{module_name}: public objects without a docstring: {lacking}"
