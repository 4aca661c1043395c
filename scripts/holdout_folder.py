"""Make a 300-W folder of symlinks to a data set's faces *minus* the validation split that
`landmask train --seed S --val-fraction F` holds out of it, so a run on mixed data can train on
that data set without seeing the faces later used to choose between models (scripts/heldout.py).

    python scripts/holdout_folder.py ../shared/data/helen-68/trainset /tmp/helen-train-minus-heldout
    python scripts/holdout_folder.py ../shared/data/helen-68/trainset /tmp/helen-heldout --held   # only those

(``--held``: a folder of the held-out faces alone, to score a whole pipeline on them with
``landmask evaluate --boxes detect``.)
"""
import argparse
import os
from pathlib import Path

from landmask.datasets import load_dataset
from landmask.datasets import split


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--held", action="store_true", help="link the held-out faces instead of the others")
    a = ap.parse_args()
    samples = load_dataset(a.data)
    keep, held = split(len(samples), a.fraction, a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=False)
    for i in held if a.held else keep:
        for f in (Path(samples[i].path), Path(samples[i].source)):
            os.symlink(f.resolve(), out / f.name)
    print(f"{out}: {len(held) if a.held else len(keep)} faces linked, "
          + (f"the {len(held)} held out of {len(samples)}" if a.held else f"{len(held)} held out"))


if __name__ == "__main__":
    main()
