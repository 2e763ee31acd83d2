"""The API reference covers every public name: each is on a page of docs/api/ (an mkdocstrings `:::` block), and
every public function and method says, in the Google style mkdocstrings renders, its parameters (`Args:`), its
result (`Returns:`) and the errors a caller should handle (`Raises:`), after a one-line summary.

The package is read with griffe (what mkdocstrings reads it with), from source, without importing it; the last
test builds the site with `mkdocs build --strict` and finds every public name in it."""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import importlib
import os
import re
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

griffe = pytest.importorskip("griffe", reason="griffe comes with mkdocstrings (the docs and test extras)")

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "api"
# the public modules spark_nb's docstring names (tests/test_architecture.py checks that list)
MODULES = ("avatar", "imitator", "models", "errors", "media", "display", "widgets", "batch", "samples", "local")
BY_MODULE = ["spark_nb", *MODULES]
DIRECTIVE = re.compile(r"^::: *([\w.]+)[ \t]*\n((?:[ \t]+\S.*\n?|[ \t]*\n)*)", re.M)


@functools.cache
def package() -> Any:
    """spark_nb as mkdocstrings sees it: loaded from source by griffe, its docstrings parsed as Google style."""
    return griffe.load("spark_nb", search_paths=[str(ROOT)], docstring_parser="google", resolve_aliases=True,
                       resolve_external=False)


def real(obj: Any) -> Any:
    """The object an alias (an imported name) stands for."""
    return obj.final_target if obj.is_alias else obj


def exports(module: Any) -> list[str]:
    """The public names of a public module: its `__all__`."""
    assert module.exports is not None, f"{module.path} declares no __all__"
    return [name if isinstance(name, str) else name.name for name in module.exports]


def public_names(where: str) -> dict[str, Any]:
    """dotted path -> object, for the public names of spark_nb itself (its __all__) or of a public module."""
    module = package() if where == "spark_nb" else package()[where]
    return {f"{module.path}.{name}": module[name] for name in exports(module)}


def members(cls: Any) -> Iterator[Any]:
    """The public members a class defines itself (an explicit __init__ included; dataclass fields are attributes)."""
    for name, member in cls.members.items():
        if member.is_alias or (name.startswith("_") and name != "__init__"):
            continue
        if name == "__init__" and not member.lineno:  # made by @dataclass: its fields say it
            continue
        yield member


# -- the pages -------------------------------------------------------------------------------------------------


def directives() -> dict[str, list[str] | None]:
    """Each `::: path` block of docs/api/*.md -> the members its options list (None: all of them)."""
    found: dict[str, list[str] | None] = {}
    for page in sorted(PAGES.glob("*.md")):
        for match in DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            path, options = match.group(1), textwrap.dedent(match.group(2))
            listed = re.search(r"^\s*members:\s*\n((?:\s*- *\S+\s*\n?)+)", options, re.M)
            found[path] = re.findall(r"- *(\S+)", listed.group(1)) if listed else None
    return found


def shown_paths() -> set[str]:
    """The dotted paths the pages show: each block's object and the members it lists (or, for a module, its
    __all__), with the public members of every class among them."""
    shown: set[str] = set()
    for path, listed in directives().items():
        obj = package()[path.removeprefix("spark_nb.")] if path != "spark_nb" else package()
        obj = real(obj)
        shown.add(path)
        names = listed if listed is not None else exports(obj) if obj.is_module else [m.name for m in members(obj)]
        for name in names:
            shown.add(f"{path}.{name}")
            target = real(obj[name])
            if target.is_class:
                shown.update(f"{path}.{name}.{m.name}" for m in members(target))
    return shown


def is_shown(path: str, obj: Any, shown: set[str]) -> bool:
    """path is on a page, or what it names is, under the public module that defines it (spark_nb.APIError is shown
    as spark_nb.errors.APIError)."""
    target = real(obj).path
    return path in shown or (target in shown and not any(part.startswith("_") for part in target.split(".")))


@pytest.mark.parametrize("where", BY_MODULE)
def test_every_public_name_is_on_a_reference_page(where: str) -> None:
    """Each name of spark_nb.__all__ and of each public module's __all__ is on a page of docs/api/, with a docstring
    of its own (mkdocstrings leaves out what has none)."""
    shown = shown_paths()
    missing = [path for path, obj in public_names(where).items() if not is_shown(path, obj, shown)]
    undocumented = [path for path, obj in public_names(where).items() if not real(obj).docstring]
    assert missing == [] and undocumented == []


# -- the docstrings --------------------------------------------------------------------------------------------


def sections(obj: Any) -> dict[str, list[Any]]:
    """A docstring's sections by kind (parameters, returns, raises, ...): their items."""
    found: dict[str, list[Any]] = {}
    for section in obj.docstring.parse("google") if obj.docstring else []:
        found.setdefault(section.kind.value, []).extend(section.value if isinstance(section.value, list) else [])
    return found


def raises_itself(fn: Any) -> bool:
    """fn is behind the public boundary (only a SparkError leaves it), or raises a new exception in its own body."""
    if any("boundary" in str(decorator.value) for decorator in fn.decorators):
        return True
    source = textwrap.dedent(fn.source) if fn.source else ""
    return any(isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
               for node in ast.walk(ast.parse(source)))


def exception_named(name: str, module: str) -> bool:
    """name (as a Raises: entry spells it) is an exception class of builtins, spark_nb.errors, fn's module or its
    package (batch.ManifestError for batch._runner)."""
    places: list[Any] = [builtins, importlib.import_module("spark_nb.errors")]
    for where in (module, module.rpartition(".")[0]):
        with contextlib.suppress(ImportError, ValueError):  # ValueError: no package ("")
            places.append(importlib.import_module(where))
    found = [getattr(place, name.rpartition(".")[2], None) for place in places]
    return any(isinstance(cls, type) and issubclass(cls, BaseException) for cls in found)


def defects(fn: Any, owner: Any = None) -> list[str]:
    """What fn's docstring lacks: a one-line summary, an Args: entry for each parameter, a Returns: section for a
    result, a Raises: section when it raises, and exception classes in it."""
    doc = fn.docstring or (owner.docstring if owner is not None and fn.name == "__init__" else None)
    if doc is None:
        return ["no docstring"]
    problems = []
    lines = doc.value.splitlines()
    if fn.name != "__init__" and (not lines or not lines[0].strip() or (len(lines) > 1 and lines[1].strip())):
        problems.append("the first line is not a one-line summary followed by a blank line")
    found = sections(fn)
    if fn.name == "__init__" and owner is not None:  # a constructor's arguments may be said in its class docstring
        for kind, items in sections(owner).items():
            found.setdefault(kind, []).extend(items)
    said = {item.name.lstrip("*") for item in found.get("parameters", []) + found.get("other parameters", [])}
    needed = [p.name for p in fn.parameters if p.name not in ("self", "cls")]
    problems += [f"Args: does not name {name}" for name in needed if name not in said]
    returns = str(fn.returns) if fn.returns is not None else "None"
    if fn.name != "__init__" and returns != "None" and not (found.get("returns") or found.get("yields")):
        problems.append(f"no Returns: section (it returns {returns})")
    if raises_itself(fn) and not found.get("raises"):
        problems.append("no Raises: section (it raises)")
    module = fn.module.path
    problems += [f"Raises: {item.annotation} is not an exception" for item in found.get("raises", [])
                 if not exception_named(str(item.annotation), module)]
    return problems


def callables(where: str) -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, function, its class or None) for each public function and method of where's public names."""
    for path, obj in public_names(where).items():
        target = real(obj)
        if target.is_function:
            yield path, target, None
        elif target.is_class:
            for member in members(target):
                if member.is_function:
                    yield f"{path}.{member.name}", member, target


@pytest.mark.parametrize("where", BY_MODULE)
def test_every_public_callable_says_its_parameters_result_and_errors(where: str) -> None:
    """Each public function and method (and explicit constructor): a one-line summary, `Args:` naming every
    parameter, `Returns:` when it returns something, `Raises:` when it raises (behind the public boundary, or a
    raise of its own), listing exception classes."""
    found = {path: problems for path, fn, owner in callables(where) if (problems := defects(fn, owner))}
    assert found == {}, "\n".join(f"{path}: {'; '.join(problems)}" for path, problems in found.items())


def unnamed_fields(cls: Any) -> list[str]:
    """The fields of a dataclass that neither its docstring's `Attributes:` nor a docstring of their own describe."""
    if "dataclass" not in cls.labels:
        return []
    said = {item.name for item in sections(cls).get("attributes", [])}
    return [name for name, member in cls.members.items()
            if member.is_attribute and "instance-attribute" in member.labels and not name.startswith("_")
            and name not in said and not member.docstring]


@pytest.mark.parametrize("where", BY_MODULE)
def test_every_public_dataclass_says_its_fields(where: str) -> None:
    """A public dataclass (Settings, Result, ModelSpec, RowOutcome, ...) is made from its fields: each is described,
    in the class's `Attributes:` or a docstring of its own."""
    found = {path: names for path, obj in public_names(where).items()
             if real(obj).is_class and (names := unnamed_fields(real(obj)))}
    assert found == {}


def test_the_checks_find_what_is_missing() -> None:
    """The docstring check is not vacuous: a function without Args/Returns/Raises, one with a two-line summary,
    one naming a non-exception, and a complete one."""
    code = '''
def bare(a: int, *, b: str = "", **config: object) -> int:
    """Add."""
    raise ValueError(a)

def wrapped(a: int) -> None:
    """Two lines
    of summary.

    Args:
        a: a number.

    Raises:
        NotAnError: never.
    """

def complete(a: int, **config: object) -> int:
    """Add one.

    Args:
        a: a number.
        **config: ignored.

    Returns:
        a + 1.

    Raises:
        ValueError: when a is negative.
    """
    if a < 0:
        raise ValueError(a)
    return a + 1
'''
    with griffe.temporary_visited_module(code, docstring_parser="google") as module:
        assert defects(module["bare"]) == ["Args: does not name a", "Args: does not name b",
                                           "Args: does not name config", "no Returns: section (it returns int)",
                                           "no Raises: section (it raises)"]
        assert defects(module["wrapped"]) == ["the first line is not a one-line summary followed by a blank line",
                                              "Raises: NotAnError is not an exception"]
        assert defects(module["complete"]) == []


def test_the_pages_check_finds_a_name_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page that lists only some members of spark_nb leaves the others out, and the check says so."""
    (tmp_path / "spark_nb.md").write_text("# x\n\n::: spark_nb\n    options:\n      members:\n        - history\n",
                                          encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "PAGES", tmp_path)
    shown = shown_paths()
    names = public_names("spark_nb")
    assert is_shown("spark_nb.history", names["spark_nb.history"], shown)
    assert not is_shown("spark_nb.spend", names["spark_nb.spend"], shown)


# -- the site ----------------------------------------------------------------------------------------------------


def inventory(site: Path) -> set[str]:
    """The Python objects the built site documents (mkdocstrings' objects.inv)."""
    raw = (site / "objects.inv").read_bytes()
    body = zlib.decompress(raw.split(b"\n", 4)[4]).decode("utf-8")
    return {line.split()[0] for line in body.splitlines() if line.split()[1].startswith("py:")}


@pytest.mark.slow
def test_the_reference_builds_strictly_and_shows_every_public_name(tmp_path: Path) -> None:
    """`mkdocs build --strict` (offline: no external inventory) passes without a warning, and the site documents
    every public name (itself, or what it names under its public module)."""
    pytest.importorskip("mkdocs", reason="mkdocs comes with the docs extra: pip install -e '.[docs]'")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "WARNING" not in run.stderr, run.stderr[-3000:]
    documented = inventory(site)
    everything = {path: obj for where in ["spark_nb", *MODULES] for path, obj in public_names(where).items()}
    missing = [path for path, obj in everything.items() if not is_shown(path, obj, documented)]
    assert missing == [], f"not in the built reference: {missing} (built in {time.monotonic() - started:.1f} s)"
