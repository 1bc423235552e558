"""House rules checked on the source tree: no import cycle among the modules of ``bench``, ``objectives`` and
``tasks`` (module-level imports, read with ``ast``; a module's import of its own enclosing packages is not an
edge, Python imports those first in any case), and no module over about 400 lines unless its docstring
says why (a sentence naming the "400 lines", e.g. "Over 400 lines because ...")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "objectives", "tasks")
MAX_LINES = 400
#: modules over the limit while work in flight splits them (remove an entry when its module is split)
PENDING: dict[str, str] = {}  # module -> why its split waits (none today)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _top_level_imports(tree: ast.Module):
    """Import statements executed when the module is imported: the module body and the bodies of top-level
    ``try`` / ``if`` blocks (not ``if TYPE_CHECKING``), never inside functions or classes."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" not in test:
                todo += node.body + node.orelse


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at module level (relative imports resolved)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rsplit(".", 1)[0]
        for node in _top_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                # a module's own packages are imported before it in any case: not an edge
                if t in modules and t != name and not name.startswith(t + "."):
                    graph[name].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports():
    g = import_graph()
    assert "bench.report.load" in g["bench.report.tables"]  # from .load import ...
    assert "tasks.metrics" in g["bench.report.significance"]  # import tasks.metrics as ...
    assert "objectives.mgll" in g["objectives"]  # from . import clip, ..., mgll
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles (module-level imports; break them, e.g. move the shared piece to its own " \
                       "module):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_modules_under_400_lines_or_say_why():
    long = []
    for name, path in _modules().items():
        n = len(path.read_text().splitlines())
        if n <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        rel = path.relative_to(ROOT).as_posix()
        if f"{MAX_LINES} lines" not in doc and rel not in PENDING:
            long.append(f"{rel}: {n} lines")
    assert not long, f"modules over {MAX_LINES} lines whose docstring does not say why (split them, or add a " \
                     f"sentence such as 'Over {MAX_LINES} lines because ...'):\n" + "\n".join(long)
