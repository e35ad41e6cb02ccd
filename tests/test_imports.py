"""The package's import structure: no cycles, the configuration importable without torch, the jobs' seams."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ray_ncut"


def _module_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere (top level or inside functions)."""
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                found = [target, *(f"{target}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {m for m in found if m in mods and m != name}
    return graph


def _cycle(graph) -> list[str] | None:
    """One import cycle of ``graph`` as a path of module names, or None."""
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = "done"
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = _module_graph()
    assert len(graph) > 30 and graph["ray_ncut.model"] >= {"ray_ncut.config", "ray_ncut.nn", "ray_ncut.scaling"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_jobs_never_ask_whether_an_output_is_a_uri():
    """They open their output once (``outputs.open_output``) and ask the object; ``is_uri`` lives in outputs/."""
    asking = [path.name for path in sorted((PACKAGE / "pipeline").glob("*.py"))
              if "is_uri" in path.read_text() or '"://"' in path.read_text()]
    assert asking == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_the_configuration_imports_without_torch_or_ray():
    code = "import sys, ray_ncut.config, ray_ncut.outputs.marker; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_local_job_never_imports_ray(tmp_path):
    """--engine local trains and labels in the job's process: the executor seam keeps ray unimported."""
    code = ("import sys\n"
            "from ray_ncut.pipeline.commands import assign_main, train_main\n"
            "data = 'builtin:blobs?n=600&d=4&k=3'\n"
            "assert train_main(['--data', data, '--out', 'm', '--engine', 'local', '--steps', '20',"
            " '--distill-steps', '10', '--hidden', '16']) == 0\n"
            "assert assign_main(['--model', 'm', '--out', 'l', '--engine', 'local']) == 0\n"
            "print('ray imported:', 'ray' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ray imported: False")
    assert (tmp_path / "l" / "metrics.json").is_file()


def test_a_read_task_unpickles_without_torch_or_ray_train():
    """Every job starts fresh Ray workers, and each imports the module its task's code comes from:
    a read task's body (ray_ncut.ray.tasks) must not cost a worker torch's and Ray Train's imports."""
    from ray import cloudpickle

    from ray_ncut.data.readers import read_unit_ids
    from ray_ncut.pipeline.scan import _scan_unit
    from ray_ncut.ray.tasks import UnitAssignActor, unit_mapper

    # the id check's and the training scan's task code, and the labelling actor's class
    task = cloudpickle.dumps((unit_mapper([], read_unit_ids), unit_mapper([], _scan_unit), UnitAssignActor)).hex()
    code = ("import sys; from ray import cloudpickle\n"
            f"cloudpickle.loads(bytes.fromhex({task!r}))\n"
            "print(sorted({'torch', 'ray.train', 'ray_ncut.ray.executor'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
