"""The shape of the house, read from the source (docs/architecture.md draws it).

An AST walk over tfislr/ that counts every import, the function-local ones too (those are
how cycles slipped in unseen before), and asserts:

- no import cycle between tfislr's modules;
- imports run one way, down the layers of `LAYERS` (a module imports its own layer or
  lower ones, never a higher one);
- no function or method longer than `MAX_FUNCTION_LINES`.

Not counted: the `if __name__ == "__main__":` guard of a library module (`python -m
tfislr.evaluate` hands over to its command in tfislr/cli/, at run time only) and the lazy
public API of tfislr/__init__.py (it names the library from above; it is imported by users,
never by tfislr's own modules).
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tfislr"

# Highest first. A name is the first part below `tfislr.` (a package or a top-level module).
LAYERS = [
    {"cli"},
    {"evaluate", "predict", "blend", "video", "stream"},
    {"export"},
    {"training"},
    {"data", "augment", "augment_batch"},
    {"runs", "plots"},
    {"model"},
    {"preprocessing"},
    {"config", "landmarks", "atomic", "checks", "errors", "runtime", "timeline", "text"},
]
MAX_FUNCTION_LINES = 80


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_main_guard(node):
    test = node.test
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name) and test.left.id == "__name__")


def _resolve(module, node, is_package):
    """The absolute module names an Import/ImportFrom node names (`from a import b` gives
    `a.b` when that is a module, else `a`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def imports(path):
    """[(imported tfislr module, line)] of one file, function-local imports included."""
    module = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    skipped = set()
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_guard(node):
            skipped.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
            for name in _resolve(module, node, path.name == "__init__.py"):
                if name == "tfislr" or name.startswith("tfislr."):
                    found.append((name, node.lineno))
    return found


def graph():
    """{module: {imported module: first line}} over tfislr's own modules."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for module, path in paths.items():
        if module == "tfislr":  # the lazy public API (see the module docstring)
            continue
        targets = edges.setdefault(module, {})
        for name, line in imports(path):
            # `from tfislr.x import name`: the module tfislr.x.name if it exists, else tfislr.x.
            while name not in paths and "." in name:
                name = name.rsplit(".", 1)[0]
            # A module's own packages are loaded before it is (`from tfislr.export import
            # graph` inside tfislr.export.ensemble): no edge, or every package would cycle.
            if name in paths and not module.startswith(name + ".") and name != module:
                targets.setdefault(name, line)
    return edges, paths


def layer_of(module):
    top = module.split(".")[1] if "." in module else module
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    return None


def test_every_module_has_a_layer():
    _, paths = graph()
    unplaced = sorted(m for m in paths if m != "tfislr" and layer_of(m) is None
                      and not m.startswith("tfislr.configs"))
    assert not unplaced, f"modules in no layer of LAYERS: {unplaced}"


def test_imports_run_down_the_layers():
    edges, paths = graph()
    upward = []
    for module, targets in sorted(edges.items()):
        for target, line in sorted(targets.items()):
            if layer_of(target) < layer_of(module):
                upward.append(f"{paths[module].relative_to(PACKAGE.parent)}:{line}: "
                              f"{module} imports {target} (a higher layer)")
    assert not upward, "\n".join(upward)


def _cycles(edges):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    edges, _ = graph()
    cycles = _cycles(edges)
    assert not cycles, "import cycles: " + "; ".join(" ⇄ ".join(c) for c in cycles)


def test_the_checks_see_what_they_check():
    """The walk finds function-local imports and the checks find a planted cycle and an
    upward import (so an empty result above means something)."""
    edges, _ = graph()
    # cli/train.py imports tfislr.cli.cv inside main() only.
    assert "tfislr.cli.cv" in edges["tfislr.cli.train"]
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == [["a", "b", "c"]]
    assert layer_of("tfislr.model.classifier") > layer_of("tfislr.training.run")


def test_no_function_over_80_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: "
                                f"{node.name} has {lines} lines")
    assert not long, "\n".join(long)
