"""The package's shape: no import cycles (counting imports inside functions), and a light top-level import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import course_utils

PACKAGE = Path(course_utils.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The course_utils modules `path` imports anywhere in its body, functions included."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("course_utils"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("course_utils"):
                stem = node.module
            else:
                continue
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)  # `from . import config`
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name and m != "course_utils"} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "course_utils.pricing.ensemble" in graph and "course_utils.pricing.baseline_stack" in graph["course_utils.pricing.ensemble"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_reading_a_profile_never_imports_the_hub_client():
    """config is read by every notebook and test: no Hub call, so no huggingface_hub import either."""
    assert "huggingface_hub" not in (PACKAGE / "core" / "config.py").read_text(encoding="utf-8")


def test_importing_the_package_stays_light():
    heavy = ("torch", "transformers", "chromadb", "sentence_transformers", "gradio", "openai")
    code = (
        "import sys, time; t = time.perf_counter(); import course_utils; "
        f"print(time.perf_counter() - t, [m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out[1].strip() == "[]", f"import course_utils pulled in {out[1]}"


PARTS = ("core", "foundations", "chat", "retrieval", "pricing", "serving", "agents")
MAX_MODULE_LINES = 450


def test_every_module_lives_in_a_course_part():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py"], f"modules outside a course part: {top}"
    parts = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert parts == sorted(PARTS)


def test_no_module_is_longer_than_one_sitting():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concept): {long}"
