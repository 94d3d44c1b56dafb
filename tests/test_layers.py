"""The house rules of the package layout (DESIGN.md "Layout"), checked on the source.

Every import is read from the AST — function-level imports included, and the
``"module:function"`` targets of the encoder registry — and must go *down* the stages of
the data flow (or stay inside its own stage), never form a cycle and never reach for a
private name of another module. Plus the budgets: a handful of top-level modules, files
under 400 lines, at most 7 parameters a function outside Typer commands, one atomic
writer.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("audioaudit", "generators")

# bottom layer first; a module may import from its own layer or below
LAYERS: list[tuple[str, ...]] = [
    ("audioaudit", "audioaudit.errors", "audioaudit.schema", "audioaudit.util"),
    ("audioaudit.audio",),
    ("audioaudit.encoders",),
    ("audioaudit.similarity", "audioaudit.duplicates"),
    ("audioaudit.detector", "audioaudit.index"),
    ("audioaudit.audit",),
    ("audioaudit.generation",),
    ("audioaudit.report",),
    ("audioaudit.demo", "audioaudit.commands", "audioaudit.cli"),
]
SIBLINGS = {("audioaudit.detector", "audioaudit.index"), ("audioaudit.index", "audioaudit.detector")}
GENERATORS_FROM_LAYER = 6  # generation and above may drive generators
GENERATORS_MAY_IMPORT = ("generators", "audioaudit.util")  # the one atomic writer; never the audit side
TOP_LEVEL_ALLOWED = {"__init__", "errors", "schema", "cli", "demo", "similarity"}
MAX_LINES = 400
MAX_PARAMS = 7
TARGET = re.compile(r"^((?:audioaudit|generators)(?:\.\w+)+):\w+$")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_sources() -> dict[str, str]:
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            out[module_name(p)] = p.read_text(encoding="utf-8")
    return out


def layer_of(mod: str) -> tuple[int, str] | None:
    best = None
    for n, prefixes in enumerate(LAYERS):
        for pre in prefixes:
            if (mod == pre or mod.startswith(pre + ".")) and (best is None or len(pre) > len(best[1])):
                best = (n, pre)
    return best


def imports_of(mod: str, source: str, modules: set[str]) -> list[tuple[str, list[str], int]]:
    """(imported project module, names taken from it, line) for every import in ``source``."""
    tree = ast.parse(source)
    is_pkg = any(m.startswith(mod + ".") for m in modules)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, [], node.lineno) if sub in modules else (base, [a.name], node.lineno))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and TARGET.match(node.value):
            out.append((TARGET.match(node.value).group(1), [], node.lineno))
    return out


def check(sources: dict[str, str]) -> list[str]:
    """Every broken rule, one line each (empty: the house is in order)."""
    modules = set(sources)
    problems, graph = [], {m: set() for m in modules}
    for mod, src in sources.items():
        mine = layer_of(mod)
        for target, names, line in imports_of(mod, src, modules):
            where = f"{mod}:{line} imports {target}"
            if target != mod and target in modules:
                graph[mod].add(target)
            for n in names:
                if n.startswith("_") and not n.endswith("__") and target != mod:
                    problems.append(f"{where}: private name {n}")
            if mod.startswith("generators"):
                if not target.startswith(GENERATORS_MAY_IMPORT):
                    problems.append(f"{where}: generators may import only {GENERATORS_MAY_IMPORT}")
                continue
            if target.startswith("generators"):
                if mine is None or mine[0] < GENERATORS_FROM_LAYER:
                    problems.append(f"{where}: only generation and above drive generators")
                continue
            theirs = layer_of(target)
            if mine is None or theirs is None:
                problems.append(f"{where}: module outside the layer table")
            elif theirs[0] > mine[0]:
                problems.append(f"{where}: upward import (layer {mine[0]} -> {theirs[0]})")
            elif (mine[1], theirs[1]) in SIBLINGS:
                problems.append(f"{where}: {mine[1]} and {theirs[1]} are siblings that never import each other")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a path."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return read_sources()


def test_imports_go_down_without_cycles_or_private_names(sources):
    assert check(sources) == []


@pytest.mark.parametrize("mod,line,expect", [
    ("audioaudit.audio.bad", "from audioaudit.audit.run import run_audit", "upward import"),
    ("audioaudit.audio.bad", "def f():\n    from audioaudit.index import store\n", "upward import"),
    ("audioaudit.index.bad", "from audioaudit.detector import augment", "siblings"),
    ("audioaudit.encoders.bad", "from audioaudit.audio.io import _decode", "private name _decode"),
    ("generators.bad", "from audioaudit.audit.run import run_audit", "generators may import only"),
    ("audioaudit.encoders.bad", "T = 'audioaudit.report.render:render'", "upward import"),
])
def test_the_check_fails_on_a_broken_rule(sources, mod, line, expect):
    bad = dict(sources, **{mod: line})
    found = check(bad)
    assert any(expect in p and p.startswith(mod) for p in found), found


def test_the_check_finds_a_cycle(sources):
    bad = dict(sources, **{"audioaudit.audio.a": "from audioaudit.audio import b", "audioaudit.audio.b":
                           "def f():\n    from audioaudit.audio import a\n"})
    assert any("cycle" in p and "audioaudit.audio.a" in p for p in check(bad))


def test_a_handful_of_top_level_modules():
    top = {p.stem for p in (ROOT / "audioaudit").glob("*.py")}
    assert top <= TOP_LEVEL_ALLOWED, sorted(top - TOP_LEVEL_ALLOWED)


def test_files_stay_under_the_line_budget():
    long = [f"{p.relative_to(ROOT)}: {n}" for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert long == []


def _is_typer_command(fn: ast.FunctionDef) -> bool:
    defaults = fn.args.defaults + [d for d in fn.args.kw_defaults if d is not None]
    return any(isinstance(d, ast.Call) and ast.unparse(d.func).startswith("typer.") for d in defaults)


def test_no_function_takes_more_than_seven_parameters(sources):
    wide = []
    for mod, src in sources.items():
        for fn in ast.walk(ast.parse(src)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_typer_command(fn):
                a = fn.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                if len(names) > MAX_PARAMS:
                    wide.append(f"{mod}.{fn.name}: {len(names)}")
    assert wide == []


def test_one_atomic_writer(sources):
    replacers = sorted(m for m, src in sources.items() if "os.replace(" in src or ".replace(tmp" in src)
    assert replacers == ["audioaudit.util.atomic"]
