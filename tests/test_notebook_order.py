"""Every name a notebook's cell reads was defined by an earlier cell (or the same cell, above it).

Run top to bottom, a cell that uses a variable an earlier edit moved or renamed fails only when CI reaches it;
this finds it in a second by walking the cells in order. Bodies of functions, lambdas and comprehensions are not
walked (they run later, when the names may exist)."""

import ast
import builtins
import json

import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
KNOWN = set(dir(builtins)) | {"display", "get_ipython"}


def _stores(node, names):
    names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))


class _InOrder(ast.NodeVisitor):
    def __init__(self, defined):
        self.defined, self.missing = defined, []

    def visit_FunctionDef(self, node):
        self.defined.add(node.name)

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_Lambda(self, node):
        pass

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_Lambda

    def visit_Import(self, node):
        self.defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)

    visit_ImportFrom = visit_Import

    def visit_Assign(self, node):
        self.visit(node.value)
        for target in node.targets:
            _stores(target, self.defined)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)
        _stores(node.target, self.defined)

    def visit_For(self, node):
        self.visit(node.iter)
        _stores(node.target, self.defined)
        for child in node.body + node.orelse:
            self.visit(child)

    def visit_With(self, node):
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                _stores(item.optional_vars, self.defined)
        for child in node.body:
            self.visit(child)

    def visit_NamedExpr(self, node):
        self.visit(node.value)
        _stores(node.target, self.defined)

    def visit_ExceptHandler(self, node):
        if node.name:
            self.defined.add(node.name)
        for child in node.body:
            self.visit(child)

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id not in self.defined and node.id not in KNOWN:
            self.missing.append((node.id, node.lineno))


def undefined_names(cells: list[str]) -> list[tuple[int, str, int]]:
    """(code cell number, name, line) for each name read before any cell defined it."""
    defined, found = set(), []
    for number, source in enumerate(cells):
        source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        visitor = _InOrder(defined)
        visitor.visit(ast.parse(source))
        found += [(number, name, line) for name, line in visitor.missing]
    return found


def test_the_check_finds_a_name_used_before_its_cell():
    assert undefined_names(["x = 1", "print(x + y)", "y = 2"]) == [(1, "y", 1)]
    assert undefined_names(["def f():\n    return later", "later = 1", "for i in range(2):\n    print(i)"]) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_reads_a_name_no_earlier_cell_defined(path):
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert not undefined_names(cells), f"{path.name}: (code cell, name, line) used before defined: {undefined_names(cells)}"
