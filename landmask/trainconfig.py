"""The training job's one typed config: its fields and defaults, named presets, the checks that
refuse a bad option before any data are read, and its YAML form (config.yaml in a run folder)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from landmask import geometry as G
from landmask.errors import LandmaskError
from landmask.transforms import AugmentConfig


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list)
    out: str = "runs/train"
    scheme: str = "ibug68"
    preset: str = "default"
    arch: str = "lmnet"
    input_size: int = 80
    width: float = 1.0
    depth8: int = 3              # lmnet blocks at 1/8 and 1/16 resolution
    depth16: int = 3
    head_stride: int = 4         # lmnet heatmaps at 1/4 or 1/8 of the input
    block: str = "sep"           # lmnet blocks: sep (depthwise + pointwise) | dense (full 3×3)
    head: str = "heatmap"        # lmnet head: heatmap (2-D soft-argmax) | simcc (x and y distributions, 1/8 maps)
    crop_scale: float = G.CROP_SCALE   # crop side / face box side (stored in the model file)
    epochs: int = 150
    batch_size: int = 64
    optimizer: str = "adamw"     # adamw (one-cycle schedule) | adam (constant lr)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    loss: str = "l1"             # l1 | wing | mse
    heat_reg: float = 0.0        # weight of the heatmap-shape term (lmnet; JS to a Gaussian at the point)
    augment: bool = True
    box_jitter: float = 1.0      # × the augmentation's box shift (±8 %) and zoom (±15 %) ranges
    rotate: float = AugmentConfig.rotate_deg   # the augmentation's rotation range, ± degrees
    flip_prob: float = AugmentConfig.flip      # probability of a mirrored training crop
    mirror_shift: float = 0.0    # crop px added to mirrored x (2 × the annotations' x offset)
    blur_prob: float = AugmentConfig.blur        # probability of a blurred training crop
    blur_max: float = AugmentConfig.blur_max     # the blur's largest sigma, crop pixels
    noise_max: float = AugmentConfig.noise * 255  # the added noise's largest std, grey levels (0-255)
    val_fraction: float = 0.05
    seed: int = 0
    threads: int = 2
    device: str = "cpu"          # where training runs: cpu, or cuda / cuda:N (a GPU)
    workers: int = 0             # processes that cut the training crops (0: the training process itself)
    save_every: int = 1          # write the model, resume state, history and curves every N epochs (and the last)
    stop_after: int = 0          # stop (resumably) after this epoch, the schedule still that of --epochs (0: never)
    limit: int = 0               # use only the first N faces of each data set (0 = all)
    init: str = ""               # start from this model file's weights (same architecture)
    teacher: str = ""            # distil from this model: its points on each training crop are a second target
    teacher_weight: float = 0.5  # loss = (1 - w) × loss to the labels + w × loss to the teacher
    teacher_flip: bool = False   # the teacher averages with its points on the mirrored crop (as --flip)

    # (option, least, most) of each numeric field; checked by check() before data are read
    RANGES = {"epochs": (1, 100_000), "batch_size": (1, 65_536), "lr": (1e-12, 10.0), "weight_decay": (0, 10.0),
              "heat_reg": (0, 1e6), "input_size": (16, 1024), "width": (0.05, 16.0), "depth8": (0, 64),
              "depth16": (0, 64), "crop_scale": (0.5, 5.0), "box_jitter": (0, 10.0), "rotate": (0, 180.0),
              "flip_prob": (0, 1), "mirror_shift": (-1000.0, 1000.0), "blur_prob": (0, 1), "blur_max": (0.3, 100.0), "noise_max": (0, 255.0), "val_fraction": (0, 0.99),
              "seed": (0, 2**32 - 1), "threads": (1, 1024), "workers": (0, 256), "save_every": (1, 100_000), "stop_after": (0, 100_000), "limit": (0, 10**12), "teacher_weight": (0, 1)}
    CHOICES = {"arch": ("lmnet", "seed"), "loss": ("l1", "wing", "mse"), "optimizer": ("adamw", "adam"),
               "block": ("sep", "dense"), "head_stride": (4, 8), "head": ("heatmap", "simcc"), "scheme": ("ibug68", "kaggle15", "muct76")}

    def check(self) -> "TrainConfig":
        """Refuse, with one line naming the option, a value training cannot use: out of range,
        nan/inf, the wrong type, an unknown choice, or an --out that is a file.  Reads no data
        and creates nothing."""
        import math
        import re
        for name, (lo, hi) in self.RANGES.items():
            v, opt = getattr(self, name), "--" + name.replace("_", "-")
            whole = isinstance(getattr(TrainConfig, name, None), int) or name in ("epochs", "batch_size")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (whole and not float(v).is_integer()):
                raise LandmaskError(f"{opt} {v!r}: must be {'a whole number' if whole else 'a number'}")
            if not math.isfinite(v) or not lo <= v <= hi:
                raise LandmaskError(f"{opt} {v}: must be from {lo:g} to {hi:g}")
        for name, choices in self.CHOICES.items():
            if getattr(self, name) not in choices:
                import difflib
                close = difflib.get_close_matches(str(getattr(self, name)), map(str, choices), n=1)
                raise LandmaskError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: choose one of "
                                    f"{', '.join(map(str, choices))}" + (f" (did you mean {close[0]}?)" if close else ""))
        if not isinstance(self.device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise LandmaskError(f"--device {self.device!r}: choose cpu, cuda or cuda:N")
        if not isinstance(self.data, list) or not all(isinstance(d, str) and d for d in self.data):
            raise LandmaskError(f"--data {self.data!r}: give one or more data set paths")
        if not self.out or Path(self.out).is_file():
            raise LandmaskError(f"--out {self.out!r}: is a file; give a run folder")
        return self


# Named recipes; CLI flags given explicitly override a preset's values.
PRESETS = {
    "default": {},
    # The seed project's recipe: plain CNN on 96×96 grey, MSE, 100 epochs, batch 255, no augmentation.
    "seed": dict(arch="seed", input_size=96, epochs=100, batch_size=255, optimizer="adam", lr=1e-3,
                 weight_decay=0.0, loss="mse", augment=False, scheme="kaggle15"),
}


def make_config(preset: str = "default", **overrides) -> TrainConfig:
    if preset not in PRESETS:
        raise LandmaskError(f"--preset {preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if values.get("head") == "simcc":
        values.setdefault("head_stride", 8)       # the simcc head reads the 1/8 maps
    names = {f.name for f in fields(TrainConfig)}
    bad = set(values) - names
    if bad:
        raise LandmaskError(f"unknown training option(s): {', '.join(sorted(bad))}")
    cfg = TrainConfig(preset=preset, **values).check()
    if cfg.arch != "lmnet":
        for name, default in (("head", "heatmap"), ("head_stride", 4), ("block", "sep")):
            if getattr(cfg, name) != default:
                raise LandmaskError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: an lmnet option; "
                                    f"--arch {cfg.arch} has no such choice")
    if cfg.heat_reg and (cfg.arch != "lmnet" or cfg.head != "heatmap"):
        raise LandmaskError(f"--heat-reg needs heatmaps: " + (f"--arch {cfg.arch} has none (use lmnet)"
                            if cfg.arch != "lmnet" else f"--head {cfg.head} has none"))
    if not 0 <= cfg.teacher_weight <= 1:
        raise LandmaskError(f"--teacher-weight {cfg.teacher_weight}: give a number from 0 to 1")
    if cfg.arch == "lmnet":   # refused here, before any data are read, not in the first batch
        from landmask.model import ModelConfig, lmnet_config_error
        problem = lmnet_config_error(ModelConfig(input_size=cfg.input_size, block=cfg.block,
                                                 head_stride=cfg.head_stride, head=cfg.head))
        if problem:
            field, why = problem
            raise LandmaskError(f"--{field.replace('_', '-')} {why}")
    return cfg


def config_yaml(cfg: TrainConfig) -> str:
    import yaml
    return yaml.safe_dump(asdict(cfg), sort_keys=False)


def read_config(path) -> TrainConfig:
    import yaml
    try:
        values = yaml.safe_load(Path(path).read_text())
        return TrainConfig(**values)
    except (OSError, TypeError, yaml.YAMLError) as e:
        raise LandmaskError(f"{path}: not a landmask training config ({e})") from None
