"""The package's shape, checked: no import cycles (function-local and TYPE_CHECKING imports included), the client
side never imports the server package, and each rule lives in one module."""

from __future__ import annotations

import ast
import collections
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "spark_nb"
# the only modules outside local/ that may import it: starting the embedded server, and `spark-nb serve`
MAY_IMPORT_LOCAL = {"spark_nb._backends", "spark_nb._cli_serve"}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its source (module level, functions, TYPE_CHECKING)."""
    mods = modules()
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                submodules = [f"{target}.{alias.name}" for alias in node.names]
                known = [m for m in submodules if m in mods]
                # `from . import x` of submodules imports them; a name that is not a module comes from the package
                targets = known if len(known) == len(submodules) else [target, *known]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The checker itself can fail: a -> b -> c -> a is one cycle, d alone is none."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    """No module imports (at any depth, even inside a function) a module that imports it back."""
    graph = import_graph()
    assert len(graph) > 30  # the walk really read the package
    assert cycles(graph) == []


def test_the_client_side_never_imports_the_server_package() -> None:
    """Only _backends (which starts the embedded server) and the CLI's serve (_cli_serve) reach into spark_nb.local."""
    offenders = {name: sorted(t for t in targets if t.startswith("spark_nb.local"))
                 for name, targets in import_graph().items() if not name.startswith("spark_nb.local")}
    offenders = {name: targets for name, targets in offenders.items() if targets and name not in MAY_IMPORT_LOCAL}
    assert offenders == {}


def test_internal_modules_are_private_and_public_ones_documented() -> None:
    """Every module is either underscored or named in spark_nb's docstring as public, with a docstring of its own."""
    import spark_nb

    public = {"avatar", "imitator", "models", "errors", "media", "display", "widgets", "batch", "samples", "local"}
    for name, path in modules().items():
        leaf = name.rpartition(".")[2]
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{name} has no docstring"
        if name.count(".") == 1 and not leaf.startswith("_"):
            assert leaf in public, f"{name} looks public but is not in the documented list"
            assert f"`{leaf}`" in (spark_nb.__doc__ or ""), leaf


def sources_mentioning(pattern: str) -> set[str]:
    """The modules whose source matches pattern."""
    return {name for name, path in modules().items() if re.search(pattern, path.read_text(encoding="utf-8"))}


def test_each_rule_lives_in_one_module() -> None:
    """The poll loop, the http(s) test, the seed-code mapping and the wire names each have one home."""
    assert sources_mentioning(r"PollSchedule\(") == {"spark_nb._tasks"}
    assert sources_mentioning(r"""["']https?://["']""") == set()  # no hand-written scheme tests
    assert sources_mentioning(r"def is_http_url") == {"spark_nb._urls"}
    assert sources_mentioning(r"def task_failure") == {"spark_nb.models"}
    for wire in ("image_url", "audio_url", "video_url", "driving_video_info", "store_type"):
        assert sources_mentioning(wire) == {"spark_nb.models"}, wire
    # the input limits: the numbers and their comparisons once, for the client and the local server alike
    assert sources_mentioning(r"(?<![\w.])(5|100) \* 1024") == {"spark_nb._limits"}
    assert sources_mentioning(r"def (image_too_heavy|image_too_large|media_too_large|media_too_long)\b") == \
        {"spark_nb._limits"}
    # what an earlier attempt means for a call: decided by _reuse_rule.decide alone, which the pipeline and the
    # batch act on; none of them judges an entry's retryable flag or creator, or a lost create, for itself
    assert sources_mentioning(r"def decide\b") == {"spark_nb._reuse_rule"}
    acting = {"spark_nb._pipeline", "spark_nb._reuse", "spark_nb.batch._runner", "spark_nb.batch._job"}
    assert sources_mentioning(r"\bdecide\(") >= acting
    assert acting & sources_mentioning(r"entry\.(retryable|creator_alive)|JobState\.UNCERTAIN|needs_new_task") == set()


def message_strings(path: Path) -> list[str]:
    """The string constants of a module that are not docstrings (the text its messages are made of)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_every_switch_a_message_names_has_each_surfaces_words() -> None:
    """A message telling the user to change reuse=, strict= or trim_audio= says it as the table of _surfaces spells
    it, so the CLI and the forms can say it in their own words (--no-reuse; "untick Reuse earlier results"): a new
    message spelling a switch otherwise fails here. The checker itself can fail (the last assertion)."""
    from spark_nb._surfaces import SWITCHES

    def unworded(text: str) -> list[str]:
        for said in sorted(SWITCHES, key=len, reverse=True):
            text = text.replace(said, "")
        return re.findall(r"\b(?:reuse|strict|trim_audio)=(?:True|False)\b", text)

    found = {name: bad for name, path in modules().items() if name != "spark_nb._surfaces"
             for bad in [sum((unworded(text) for text in message_strings(path)), [])] if bad}
    assert found == {}
    assert sources_mentioning(r"pass reuse=False") and unworded("or reuse=False, said otherwise") == ["reuse=False"]


MAX_FUNCTION_LINES = 60  # from a def line to its last line, decorators excluded
MAX_MODULE_LINES = 450


def oversized(path: Path) -> list[str]:
    """What in one module breaks the size limits: the module itself, or a function or method (nested ones too)."""
    text = path.read_text(encoding="utf-8")
    found = [f"the module, {len(text.splitlines())} lines"] if len(text.splitlines()) > MAX_MODULE_LINES else []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                found.append(f"{node.name} (line {node.lineno}), {lines} lines")
    return found


def test_no_function_over_60_lines_and_no_module_over_450() -> None:
    """Small units, in every module of the package: a function (def line to its last line) is at most 60 lines, a
    module at most 450 (widgets/ and local/ included). The checker itself can fail (the last assertion)."""
    found = {name: problems for name, path in modules().items() if (problems := oversized(path))}
    assert found == {}
    big = Path(__file__).resolve().parent / "test_journal.py"  # a test module with a long function and 900 lines
    assert oversized(big)
