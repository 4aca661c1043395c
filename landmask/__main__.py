"""``python -m landmask`` = the ``landmask`` command (for machines where the package is on
PYTHONPATH but not installed, so its script is not on PATH)."""
from landmask.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
