"""The runtime's layering, as docs/architecture.md draws it: libraries below
commands, no import cycles, commands never importing each other; expflow itself
loads only shared libraries, lazily; one table of resource keys."""

import ast
import json
import re
import subprocess
import sys

from conftest import REPO, TEMPLATE_PROJECT

from expflow import runtime

RUNTIME = TEMPLATE_PROJECT / "expflow_runtime"
ARCHITECTURE = REPO / "docs" / "architecture.md"


def runtime_imports() -> dict[str, set[str]]:
    """{module: the runtime modules it imports} from the code itself."""
    graph = {}
    for path in sorted(RUNTIME.glob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {alias.name for alias in node.names}
        graph[path.stem] = imported
    return graph


def documented_layers() -> dict[str, tuple[str, set[str]]]:
    """{module: (layer, imports)} from the table in docs/architecture.md."""
    rows = re.findall(r"^\| `(\w+)\.py` \| (\w[\w ]*?) \| [^|]+ \| ([^|]*) \|$", ARCHITECTURE.read_text(), re.M)
    return {name: (layer, set(re.findall(r"\w+", imports)) - {"none"}) for name, layer, imports in rows}


def test_the_documented_graph_is_the_code():
    graph = runtime_imports()
    documented = documented_layers()
    assert set(documented) == set(graph) - {"__init__"}
    assert {name: imports for name, (_, imports) in documented.items()} == {
        name: imports for name, imports in graph.items() if name != "__init__"}


def test_no_cycles_and_arrows_point_down():
    graph = runtime_imports()
    layers = {name: layer for name, (layer, _) in documented_layers().items()}
    order = {"library": 0, "job side": 1, "command": 2, "entry point": 3}
    for name, imports in graph.items():
        for target in imports:
            if name == "__init__":
                continue
            assert order[layers[target]] < order[layers[name]] or (
                layers[name] == layers[target] == "library"), f"{name} ({layers[name]}) imports {target}"
    visiting, done = set(), set()

    def visit(name, path):
        assert name not in visiting, "import cycle: " + " -> ".join(path + [name])
        if name in done:
            return
        visiting.add(name)
        for target in graph[name]:
            visit(target, path + [name])
        visiting.discard(name)
        done.add(name)

    for name in graph:
        visit(name, [])


# Standard-library modules a few commands need and every command would pay for
# at start-up (0.5 to 6 ms each: tempfile, random and hashlib load _hashlib;
# concurrent.futures loads logging, shutil the compression modules):
# imported where they are used.
LATE_STDLIB = {"concurrent.futures", "copy", "difflib", "hashlib", "random", "shutil", "subprocess", "tempfile"}


def test_no_import_dodges_the_graph():
    """Imports at the top only (none inside a function to dodge a cycle, only
    optional packages and LATE_STDLIB), and no module but the entry point
    touches sys.path."""
    for path in RUNTIME.glob("*.py"):
        tree = ast.parse(path.read_text())
        for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.level or node.module not in LATE_STDLIB):
                    raise AssertionError(f"{path.name}: {function.name} imports {node.module} late")
                if isinstance(node, ast.Import):
                    names = {alias.name for alias in node.names}
                    assert names <= {"yaml", "matplotlib", "matplotlib.pyplot"} | LATE_STDLIB, \
                        f"{path.name}: late import {names}"
        if path.name != "run.py":
            assert "sys.path" not in path.read_text(), path.name


def test_expflow_uses_only_shared_libraries_lazily():
    """expflow loads runtime leaves on first use: importing it loads none of them,
    puts nothing on sys.path, and `expflow --version` imports neither the runtime
    nor cookiecutter."""
    graph = runtime_imports()
    for path in (REPO / "expflow").glob("*.py"):
        for name in re.findall(r'runtime\.module\("(\w+)"\)', path.read_text()):
            assert not graph[name] - {"files", "slurmkit", "tables"}, f"{path.name} loads {name}, not a leaf library"
    probe = ("import sys; before = list(sys.path); import expflow.cli, expflow.advisor, expflow.detect; "
             "assert sys.path == before; "
             "print(sorted(m for m in sys.modules if m.startswith(('cookiecutter', 'jinja2', 'expflow._template'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_one_table_of_resource_keys():
    slurmkit = runtime.module("slurmkit")
    keys = [resource.key for resource in slurmkit.RESOURCES]
    assert keys == list(slurmkit.RESOURCE_KEYS)
    cookiecutter_keys = json.loads((REPO / "cookiecutter-template" / "cookiecutter.json").read_text())
    assert {key.lower() for key in keys} <= set(cookiecutter_keys)
    settings = (TEMPLATE_PROJECT / "settings.env").read_text()
    for key in keys:
        assert re.search(rf"^{key}='{{{{ cookiecutter\.{key.lower()} ", settings, re.M), key
    options = slurmkit.resource_options({key.lower(): "1" for key in keys})
    assert {option.split("=")[0] for option in options} == (
        {resource.option for resource in slurmkit.RESOURCES if resource.option}
        | {"--gres", "--requeue", "--signal", "--ntasks-per-node"})
