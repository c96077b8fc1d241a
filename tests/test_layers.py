"""The package's import graph (README "How the code is laid out"): every smrnb module sits on one floor, imports only from
its own floor or below, the graph has no circle, and no function imports a smrnb module (a circle hidden, not removed).
Read with `ast` from the exported files, so it checks exactly what `import smrnb...` runs."""
import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parent.parent / "smrnb"

# lowest first; a module imports from its own floor or a lower one, never a higher one
FLOORS = [
    ("ground", ["smrnb", "smrnb.compress", "smrnb.config", "smrnb.data", "smrnb.analysis", "smrnb.vis"]),
    ("backbones", ["smrnb.backbones.*", "smrnb.encoders"]),
    ("parts", ["smrnb.targets", "smrnb.decoder"]),
    ("methods", ["smrnb.methods.*"]),
    ("pretrain", ["smrnb.pretrain"]),
    ("train", ["smrnb.fsdp", "smrnb.train"]),
    ("evaluation tools", ["smrnb.evaluate", "smrnb.complexity", "smrnb.tiny", "smrnb.teacher"]),
    ("evaluations", ["smrnb.evaluations.*"]),
    ("experiments", ["smrnb.experiments.*"]),
    ("launch", ["smrnb.runstate", "smrnb.jobplan", "smrnb.localjobs", "smrnb.launch"]),
    ("report", ["smrnb.results", "smrnb.compare"]),
    ("top", ["smrnb.report", "smrnb.scale", "smrnb.figures", "smrnb.demo"]),
]   # "pkg.*": the package and every module in its folder (a new method, evaluation or paper file lands on its floor)

def floor_of(m: str):
    "The floor index of module `m`: its own entry, else its package's `pkg.*` entry; None if it is on no floor."
    for i, (_, ms) in enumerate(FLOORS):
        if m in ms or any(e.endswith(".*") and (m == e[:-2] or m.startswith(e[:-1])) for e in ms): return i
    return None

def module_name(p: Path) -> str:
    parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

def modules() -> dict:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py")) if p.name != "_modidx.py"}

def targets(mod: str, path: Path, node, mods) -> list:
    "The smrnb modules an import statement loads (a `from pkg import name` of a submodule counts as that submodule)."
    if isinstance(node, ast.Import): return [a.name for a in node.names if a.name.split(".")[0] == "smrnb"]
    base = node.module or ""
    if node.level:
        pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        pkg = pkg[:len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([base] if base else []))
    if base.split(".")[0] != "smrnb": return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]

def graph():
    mods, edges, local = modules(), {}, []
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        edges[m] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)): edges[m].update(t for t in targets(m, p, node, mods) if t != m)
        for f in ast.walk(tree):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for node in ast.walk(f):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and targets(m, p, node, mods):
                        local.append(f"{m}:{node.lineno} ({getattr(f, 'name', 'lambda')})")
    return mods, edges, local

def find_cycle(edges) -> list:
    "One import circle as a list of modules, or [] (depth-first search)."
    state, stack = {}, []
    def visit(m):
        state[m] = 1; stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1: return stack[stack.index(t):] + [t]
            if state.get(t) is None and (c := visit(t)): return c
        state[m] = 2; stack.pop(); return []
    for m in sorted(edges):
        if state.get(m) is None and (c := visit(m)): return c
    return []

def test_find_cycle_and_floor_check_can_fail():
    "The checks below are not vacuous: a made-up graph with a circle is caught."
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []

def test_every_module_is_on_a_floor():
    mods = modules()
    assert not (missing := sorted(m for m in mods if floor_of(m) is None)), f"modules on no floor (add them to FLOORS and README's layout): {missing}"
    named = [e[:-2] if e.endswith(".*") else e for _, ms in FLOORS for e in ms]
    assert not (gone := sorted(set(named) - set(mods))), f"FLOORS names modules that do not exist: {gone}"

def test_no_import_circle():
    _, edges, _ = graph()
    assert not (c := find_cycle(edges)), "import circle: " + " -> ".join(c)

def test_imports_go_downwards_only():
    _, edges, _ = graph()
    up = [f"{m} ({FLOORS[floor_of(m)][0]}) imports {t} ({FLOORS[floor_of(t)][0]})" for m, ts in edges.items() for t in sorted(ts)
          if floor_of(m) is not None and floor_of(t) is not None and floor_of(t) > floor_of(m)]
    assert not up, "imports from a higher floor:\n" + "\n".join(up)

def test_no_smrnb_import_inside_a_function():
    _, _, local = graph()
    assert not local, "smrnb imports inside functions (move them to the top of the module):\n" + "\n".join(local)

# functions longer than about 60 lines that are still to be split (README: "How the code is laid out"); the list may only shrink
LONG_FUNCTIONS = {("smrnb.train", "_train"), ("smrnb.evaluate", "finetune")}

def test_modules_and_functions_stay_short():
    "No module over about 400 lines (the data module's toy-set builder and the trainer excepted below) and no function over about 60."
    long_mods, long_fns = [], []
    for m, p in modules().items():
        text = p.read_text()
        if len(text.splitlines()) > 420 and m not in ("smrnb.data", "smrnb.train"): long_mods.append(f"{m}: {len(text.splitlines())} lines")
        for n in ast.walk(ast.parse(text)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 65 and (m, n.name) not in LONG_FUNCTIONS:
                long_fns.append(f"{m}.{n.name}: {n.end_lineno - n.lineno + 1} lines")
    assert not long_mods, "modules over ~400 lines (split them by concept): " + ", ".join(long_mods)
    assert not long_fns, "functions over ~60 lines (split them): " + ", ".join(long_fns)
    still = {f for f in LONG_FUNCTIONS if f[0] in modules()}
    assert still == LONG_FUNCTIONS, f"LONG_FUNCTIONS names functions that are gone or short now: {LONG_FUNCTIONS - still}"
