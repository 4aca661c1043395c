"""The README opens with the two set-up commands, and CI runs the same test command."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_block_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```")[1]
    return [ln for ln in block.splitlines()[1:] if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_opens_with_two_commands_that_ci_runs():
    main_job, tests = first_block_commands()
    assert "landmask mask landmask/samples/astronaut.jpg" in main_job and "pip install -q ." in main_job
    assert "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()
    assert (ROOT / "landmask" / "samples" / "astronaut.jpg").exists()
