"""The command line: one subcommand per job, each parses its options, calls one library function
and prints.  ``landmask --help`` and ``landmask CMD --help`` show worked examples."""
from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

from landmask.errors import LandmaskError, Terminated

EXAMPLES = """examples:
  landmask mask photo.jpg -o out/                          # red lips, tinted eyes (the defaults)
  landmask mask photos/ -o masked/ --lips color:#b0123a@0.6 --eyes blur
  landmask mask group.jpg -o out/ --eyes solid:black --lips none --max-faces 10
  landmask landmarks photo.jpg --json -
  landmask mask clip.mp4 -o out/                           # video: tracked, smoothed, audio kept
  landmask landmarks clip.mp4 --json clip.json             # per-frame tracked landmarks
  landmask camera --device 0 -o live.mp4 --show            # live; Ctrl-C finishes the file
  landmask train --data ../shared/data/helen-68/trainset --scheme ibug68 --epochs 150 --out runs/ibug68
  landmask train --preset seed --data kaggle/training.csv --out runs/seed
  landmask train --resume --out runs/ibug68
  landmask evaluate --data ../shared/data/helen-68/testset --boxes landmarks --json -
  landmask convert --data ../shared/data/helen-68/trainset --kaggle kaggle/   # writes kaggle/training.csv
"""


class Parser(argparse.ArgumentParser):
    """argparse that refuses abbreviations and suggests the nearest option for a misspelt one."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)   # for error(): which command was given
        return super().parse_args(args, namespace)

    def error(self, message):
        if "unrecognized arguments" in message:
            commands = {name: p for a in self._actions if isinstance(a, argparse._SubParsersAction)
                        for name, p in a.choices.items()}
            chosen = next((commands[t] for t in getattr(self, "_argv", []) if t in commands), None)
            parsers = [self] + ([chosen] if chosen is not None else list(commands.values()))
            opts = sorted({o for p in parsers for a in p._actions for o in a.option_strings} - {"-h"})
            every = sorted({o for p in commands.values() for a in p._actions for o in a.option_strings} - {"-h", "--help"})

            def owners(option):
                return sorted(c for c, p in commands.items() if any(option in a.option_strings for a in p._actions))
            for bad in message.split(":", 1)[1].split():
                name = bad.split("=")[0]
                if not name.startswith("-"):   # a value that came with it
                    continue
                close = difflib.get_close_matches(name, opts, n=1)
                elsewhere = difflib.get_close_matches(name, every, n=1)

                def ratio(option):
                    return difflib.SequenceMatcher(None, name, option).ratio()
                if chosen is not None and owners(name):   # another command's option
                    message += f" ({name} is an option of {', '.join(owners(name)[:3])})"
                elif close and close[0] != name and not (elsewhere and ratio(elsewhere[0]) > ratio(close[0])):
                    message += f" (did you mean {close[0]}?)"
                elif chosen is not None and elsewhere:   # nearer another command's option
                    message += f" ({elsewhere[0]} is an option of {', '.join(owners(elsewhere[0])[:3])})"
        super().error(message)


def add_train(sub):
    p = sub.add_parser("train", help="train a landmark model", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", metavar="SPEC", help="data sets (any format landmask reads)")
    p.add_argument("--out", required=True, help="run folder (config.yaml, curves.png, model files)")
    p.add_argument("--preset", default="default", help="recipe: default | seed (the original Keras recipe)")
    p.add_argument("--scheme", help="ibug68 | kaggle15 (default: the preset's, ibug68)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--loss", choices=["l1", "wing", "mse"])
    p.add_argument("--heat-reg", type=float, help="weight of the heatmap-shape loss term (lmnet; default 0)")
    p.add_argument("--arch", help="lmnet | seed")
    p.add_argument("--input-size", type=int, help="crop side in pixels")
    p.add_argument("--width", type=float, help="channel multiplier")
    p.add_argument("--depth8", type=int, help="lmnet blocks at 1/8 resolution (default 3)")
    p.add_argument("--depth16", type=int, help="lmnet blocks at 1/16 resolution (default 3)")
    p.add_argument("--head-stride", type=int, choices=[4, 8],
                   help="lmnet heatmaps at 1/4 of the input (default) or 1/8: no top-down path to 1/4, about "
                        "2/3 of the step in 8 bits")
    p.add_argument("--head", choices=["heatmap", "simcc"],
                   help="lmnet head: heatmap (a 2-D soft-argmax per point, default) or simcc (each point's 1/8 "
                        "map read by a small shared MLP into x and y distributions; implies --head-stride 8)")
    p.add_argument("--block", choices=["sep", "dense"],
                   help="lmnet blocks: sep (depthwise 3x3 + pointwise 1x1, default) or dense (one full 3x3 "
                        "convolution: more multiply-adds for the time in 8 bits)")
    p.add_argument("--crop-scale", type=float, help="crop side / face box side (default 1.5)")
    p.add_argument("--no-augment", dest="augment", action="store_const", const=False)
    p.add_argument("--box-jitter", type=float,
                   help="× the augmentation's face-box shift (±8 %%) and zoom (±15 %%) ranges (default 1)")
    p.add_argument("--rotate", type=float, help="the augmentation's rotation range, ± degrees (default 25)")
    p.add_argument("--flip-prob", type=float,
                   help="probability of a mirrored training crop (default 0.5; 0 lets the model learn annotations "
                        "that are not mirror-symmetric, e.g. shifted in x)")
    p.add_argument("--mirror-shift", type=float, metavar="PX",
                   help="crop pixels added to the x of mirrored training points: twice the annotations' x offset "
                        "from the mirror-symmetric position (the 'mirror shift' `landmask calibrate` measures on "
                        "a model trained with --flip-prob 0)")
    p.add_argument("--blur-prob", type=float,
                   help="probability of a blurred training crop (default 0.2)")
    p.add_argument("--blur-max", type=float, metavar="PX",
                   help="the blur's largest sigma in crop pixels (default 1.2; from 0.3): out-of-focus and moving faces")
    p.add_argument("--noise-max", type=float, metavar="LEVELS",
                   help="each training crop gets Gaussian noise of a std drawn up to this, in grey levels 0-255 "
                        "(default 7.65): grainy low-light photos and video frames")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", help="train on cpu (default), or cuda / cuda:N (a GPU, with PyTorch built for it); "
                                    "--resume keeps the run's own unless given: a run begun on one may go on on another")
    p.add_argument("--workers", type=int, metavar="N",
                   help="cut and augment the training crops in N processes (default 0: in the training process); "
                        "for a GPU that one core cannot keep busy. Each batch then draws from a random stream "
                        "of its own (seed, epoch, batch): the same crops for any N")
    p.add_argument("--save-every", type=int, metavar="N",
                   help="write the model, resume state, history and curves every N epochs and after the last "
                        "(default 1; best.safetensors still follows every epoch's validation): for epochs that take "
                        "about a second, on a GPU; --resume goes on from the last one written")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="stop after epoch N, its files written, the learning-rate schedule still that of --epochs: "
                        "to cut a run short on purpose, or to repeat one that a time limit cut short (--resume goes "
                        "on; N of --epochs or more changes nothing)")
    p.add_argument("--limit", type=int, help="use only the first N faces of each data set")
    p.add_argument("--init", help="start from this model file's weights (same architecture)")
    p.add_argument("--teacher", metavar="MODEL",
                   help="distil from this landmark model (a shipped name, run folder or .safetensors file; same "
                        "scheme and crop scale): it sees each augmented training crop, and its points are a "
                        "second target")
    p.add_argument("--teacher-weight", type=float, metavar="A",
                   help="loss = (1 - A) x loss to the labels + A x loss to the teacher's points (default 0.5)")
    p.add_argument("--teacher-flip", action="store_const", const=True,
                   help="the teacher averages its points with those on the mirrored crop (as --flip does)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.set_defaults(func=cmd_train)


def cmd_train(a):
    from landmask.distributed import env_info
    from landmask.train import RESUME_OVERRIDES, epochs_done, train
    from landmask.trainconfig import make_config
    if not a.resume and not a.data:
        raise LandmaskError("train: give --data PATH... (or --resume --out RUN_DIR)")
    cfg = make_config(a.preset, data=a.data, out=a.out, scheme=a.scheme, epochs=a.epochs,
                      batch_size=a.batch_size, lr=a.lr, loss=a.loss, arch=a.arch, input_size=a.input_size,
                      width=a.width, depth8=a.depth8, depth16=a.depth16, head_stride=a.head_stride,
                      head=a.head, block=a.block, crop_scale=a.crop_scale,
                      augment=a.augment, box_jitter=a.box_jitter, rotate=a.rotate, flip_prob=a.flip_prob,
                      mirror_shift=a.mirror_shift, blur_prob=a.blur_prob, blur_max=a.blur_max, noise_max=a.noise_max,
                      heat_reg=a.heat_reg,
                      val_fraction=a.val_fraction, seed=a.seed,
                      threads=a.threads, device=a.device, workers=a.workers, save_every=a.save_every,
                      stop_after=a.stop_after, limit=a.limit, init=a.init, teacher=a.teacher,
                      teacher_weight=a.teacher_weight, teacher_flip=a.teacher_flip)
    if a.resume:   # a resumed run keeps its own settings (its config.yaml): say which options go unused
        defaults = vars(build_parser().parse_args(["train", "--resume", "--out", a.out]))
        ignored = [k for k, v in vars(a).items()
                   if k not in ("resume", "out", "func", "command", "quiet", *RESUME_OVERRIDES)
                   and k in defaults and v != defaults[k]]
        if ignored and env_info().is_main:
            print("landmask: --resume continues the run as it was set up; ignored: "
                  + ", ".join("--" + k.replace("_", "-") for k in ignored), file=sys.stderr)
    overrides = {k: getattr(a, k) for k in RESUME_OVERRIDES if getattr(a, k) is not None} if a.resume else None
    path = train(cfg, console(a), resume=a.resume, overrides=overrides)   # under torchrun: one of N processes
    if env_info().is_main:
        done, total = epochs_done(path.parent)
        print(f"model: {path}" + (f" (stopped after epoch {done} of {total}; --resume goes on)" if done < total else ""))
    return 0


SCOUT_HELP = ("model of the first landmark pass on detector candidates, which only frames each one for the "
              "landmark model's own pass (default auto: ibug68-fast for the shipped ibug68 and kaggle15, ibug68-fast-int8 for "
              "ibug68-int8, none for other models; none: the landmark model itself, or for kaggle15 one pass on the "
              "detector's boxes)")


def add_runtime_options(p):
    p.add_argument("--model", help="landmark model: ibug68, ibug68-int8, ibug68-fast, ibug68-fast-int8, ibug68-tiny, "
                                   "kaggle15, or a model file (default: ibug68, run as ibug68-int8 on CPUs with 8-bit "
                                   "dot products, AVX-512 VNNI / AVX-VNNI / Arm dotprod)")
    p.add_argument("--detector", default="landmask", help="face detector: landmask (default), haar, dlib")
    p.add_argument("--scout", default="auto", metavar="MODEL", help=SCOUT_HELP)
    p.add_argument("--detect-size", type=int, help="run landmask's detector at one scale, the image's longer side "
                                                   "scaled to this (default: an image pyramid, faces of any size)")
    p.add_argument("--min-face", type=float, metavar="PX", help="smallest face to find, in pixels (the landmarks' box; "
                                                                "default: any the detector finds, about 12 px); larger is faster")
    p.add_argument("--max-faces", type=int, metavar="N", help="keep at most N faces per image, the largest first")
    p.add_argument("--min-score", type=float, help="least detector score kept (landmask's detector: 0..1; default: the detector file's own, 0.3 for the shipped one)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per process for inference, and for OpenCV's image work on photos (default 1: on a "
                        "busy 2-core machine one thread was 2-4 x faster than ONNX Runtime's default; more cores "
                        "are used by --jobs, one process each)")


EFFECTS_HELP = """\
effects (for --lips, --eyes, --eyebrows, --face): EFFECT[:VALUE][@OPACITY]
  color:COLOUR     make-up: the colour's hue, the skin's own lightness kept (color:#b0123a@0.6)
  COLOUR           the same as color:COLOUR (--lips red, --lips '#b0123a@0.5')
  solid:COLOUR     a flat fill (solid:black)
  blur[:SIGMA_PX]  Gaussian blur (default: from the part's size)
  pixelate[:PX]    square blocks (default: from the part's size)
  none             leave the part alone
  COLOUR is any CSS colour name or #hex; OPACITY is 0..1.
With no part option, landmask paints the defaults: --lips {lips} --eyes {eyes}.
Giving any part option paints only the parts given (--eyes blur leaves the lips alone)."""


def add_effect_options(p):
    from landmask.masking import DEFAULT_EFFECTS
    p.add_argument("--lips", metavar="EFFECT", help=f"effect for the lips (default {DEFAULT_EFFECTS['lips']} "
                   "when no part is given)")
    p.add_argument("--eyes", metavar="EFFECT", help=f"effect for both eyes (default {DEFAULT_EFFECTS['eyes']} "
                   "when no part is given)")
    p.add_argument("--eyebrows", metavar="EFFECT", help="effect for both eyebrows (default: none)")
    p.add_argument("--face", metavar="EFFECT", help="effect for the whole face, for privacy: blur, pixelate, "
                   "solid:black (default: none)")


def add_video_options(p):
    p.add_argument("--smooth", type=float, default=1.0, metavar="S",
                   help="video: temporal smoothing of the landmarks (default 1; 0 = off, 2 = steadier, more lag); "
                        "photos are never smoothed")
    p.add_argument("--detect-every", type=int, default=10, metavar="N",
                   help="video: run the face detector every N frames to catch new faces (default 10; faces are "
                        "followed from their landmarks in between, and re-detected at once when lost)")


def make_landmarker(a):
    from landmask.api import load
    from landmask.torch_backend import load_landmark_model   # ONNX; a run folder's .safetensors in PyTorch
    return load(load_landmark_model(a.model, threads=a.threads), a.detector, threads=a.threads, detect_size=a.detect_size,
                min_face=a.min_face, max_faces=a.max_faces, min_score=a.min_score, scout=a.scout)


def add_mask(sub):
    from landmask.masking import DEFAULT_EFFECTS
    p = sub.add_parser("mask", help="mask lips, eyes (and eyebrows) on photos and folders",
                       epilog=EFFECTS_HELP.format(**DEFAULT_EFFECTS) + "\n\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image and video files (mp4, mov, mkv, webm, avi) "
                   "or folders (walked recursively)")
    p.add_argument("-o", "--out", required=True, help="output folder (the inputs' folder layout is kept)")
    add_effect_options(p)
    add_video_options(p)
    p.add_argument("--feather", type=float, help="soft edge in pixels (default: 2%% of the eye distance)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--copy-unmasked", action="store_true", help="copy images with no face unchanged")
    p.add_argument("--debug", action="store_true", help="draw each face's box and score, its points (orange: the "
                   "model was unsure) and its part outlines over the output, to check what was found")
    p.add_argument("--quality", type=int, default=95, help="JPEG and WebP output quality, 1-100 (default 95)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="photos: N worker processes, each loading the models once, one thread each "
                        "(default: the machine's cores, one per 8 photos for a small batch; 1 = this process)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="photos: run on the Dask cluster at ADDRESS (tcp://HOST:8786; needs landmask[cluster]); "
                        "-o must be a folder every worker sees (docs/cluster.md)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_mask)


def cmd_mask(a):
    if will_use_pool(a):        # before the imports and the planning below, which its start-up then overlaps
        from landmask.pool import start_fork_server
        try:
            start_fork_server()
        except OSError:         # best effort: the pool, if one is started, reports it
            pass
    from landmask.batch import Summary, check_out_dir, layout_base, single_output
    from landmask.imageio import IMAGE_SUFFIXES, VIDEO_SUFFIXES
    videos, others = split_videos(a.inputs)
    # -o NAME.jpg / NAME.mp4 for one photo / video: that file; decided once, for photos and videos alike
    a.single = single_output(a.inputs, a.out, IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    if a.single:
        kind, names = ("video", VIDEO_SUFFIXES) if videos else ("photo", IMAGE_SUFFIXES)
        if Path(a.out).suffix.lower() not in names:
            raise LandmaskError(f"-o {a.out}: a {kind}'s output needs a {kind} file name "
                                f"({', '.join(sorted(names)[:4])}, ...) or a folder")
    else:
        out = Path(a.out)
        if (out.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES and not str(a.out).endswith(("/", os.sep))
                and not out.exists() and (len(a.inputs) > 1 or Path(a.inputs[0]).is_dir())):   # a folder named like a file
            what = f"{len(a.inputs)} inputs" if len(a.inputs) > 1 else f"the folder {a.inputs[0]}"
            raise LandmaskError(f"-o {a.out}: names a file, but the outputs of {what} go into a folder; give a "
                                f"folder (-o {out.with_suffix('')}/), or end the name with / to make that one")
        check_out_dir(a.inputs, a.out)      # a file, or an input folder (photos or videos): refused before any work
    a.layout_base = layout_base(a.inputs)   # photos and videos laid out from one root
    # photos first: their worker processes are forked before this process starts any codec or
    # inference threads (a fork after them can deadlock)
    s = mask_photos(a, others) if others else Summary()
    if videos:
        from landmask.video import mask_videos
        lm = make_landmarker(video_threads(a))
        s = merge_summaries(s, mask_videos(videos, a.out, lm,
                                           lips=a.lips, eyes=a.eyes, eyebrows=a.eyebrows, face=a.face,
                                           feather=a.feather, smooth=a.smooth, detect_every=a.detect_every,
                                           overwrite=a.overwrite, base=a.layout_base, draw=a.debug,
                                           single=a.single, reporter=console(a)))
    report_failures(a, s)
    print(s.line() + (" (use --overwrite to replace existing outputs)" if s.skipped else ""))
    return 1 if s.failed else 0


def will_use_pool(a) -> bool:
    """Whether ``landmask mask`` will likely mask photos on local worker processes: --jobs 2 or more,
    or the default --jobs on a machine with several cores given a folder or many files (a guess made
    before planning; a wrong one costs an idle fork server, never a wrong result)."""
    from landmask.pool import PHOTOS_PER_PROCESS, usable_cores
    if a.scheduler is not None or (a.jobs is not None and a.jobs < 2):
        return False
    folder = any(Path(p).is_dir() for p in a.inputs)
    if a.jobs is not None:
        return folder or len(a.inputs) > 1
    return usable_cores() > 1 and (folder or len(a.inputs) >= 2 * PHOTOS_PER_PROCESS)   # the pool's own rule


def mask_photos(a, inputs):
    """Photos in this process (--jobs 1), on --jobs N local processes or on the Dask cluster at
    --scheduler: the same outputs and summary (landmask.parallel)."""
    import functools
    from landmask.parallel import mask_files_parallel
    opts = dict(lips=a.lips, eyes=a.eyes, eyebrows=a.eyebrows, face=a.face, feather=a.feather,
                overwrite=a.overwrite, copy_unmasked=a.copy_unmasked, quality=a.quality, draw=a.debug,
                base=getattr(a, "layout_base", None), single=getattr(a, "single", None), reporter=console(a))
    if a.jobs is not None and a.jobs < 1:
        raise LandmaskError(f"--jobs {a.jobs}: give 1 or more worker processes")
    worker = runtime_options(a)               # what make_landmarker reads: it travels to worker processes
    worker.threads = a.threads or 1           # one thread per worker
    return mask_files_parallel(inputs, a.out, functools.partial(make_landmarker, worker), jobs=a.jobs,
                               scheduler=a.scheduler, threads=worker.threads, **opts)   # jobs None: the cores


def runtime_options(a) -> argparse.Namespace:
    """Only the options of add_runtime_options (all make_landmarker reads), as a namespace that
    pickles (the full one may hold a reporter and its stream)."""
    p = argparse.ArgumentParser(add_help=False)
    add_runtime_options(p)
    ns = argparse.Namespace(**{x.dest: getattr(a, x.dest, x.default) for x in p._actions})
    # the default model and its scout are decided here, once, from this machine's CPU: every worker
    # (a pool's, a cluster's on other machines) then runs the same files and writes the same bytes
    from landmask.api import SCOUTS
    from landmask.runtime import runtime_name
    if ns.model is None:
        ns.model = runtime_name("ibug68")
    if ns.scout == "auto" and ns.model in SCOUTS:
        ns.scout = SCOUTS[ns.model]
    return ns


def split_videos(inputs) -> tuple[list, list]:
    """(inputs with videos, inputs with photos): video files, and folders by what they hold."""
    from landmask.video import split_inputs
    return split_inputs(inputs)


def video_threads(a):
    """The options with one inference thread unless --threads says otherwise: in video the decoder
    and encoder threads need the cores (twice the fps of ONNX Runtime's default on 2 cores)."""
    return argparse.Namespace(**{**vars(a), "threads": a.threads or 1})


def merge_summaries(a, b):
    a.done, a.no_face, a.skipped = a.done + b.done, a.no_face + b.no_face, a.skipped + b.skipped
    a.failed += b.failed
    return a


def add_landmarks(sub):
    p = sub.add_parser("landmarks", help="boxes, scores and named landmarks of every face", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--json", metavar="FILE", help="write JSON (- for stdout, the default without --csv)")
    p.add_argument("--csv", metavar="FILE", help="write one CSV row per point (photos; - for stdout)")
    add_video_options(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_landmarks)


def cmd_landmarks(a):
    from landmask.batch import check_output_file, landmarks_files
    json_path = a.json or (None if a.csv else "-")
    if sys.stdout is None and "-" in (json_path, a.csv):   # started with it closed (>&-): nothing would arrive
        raise LandmaskError(f"{'--json' if json_path == '-' else '--csv'} -: the standard output is closed; give a file name")
    for opt, path in (("--json", json_path), ("--csv", a.csv)):   # photos and videos alike: never over an input
        check_output_file(path, opt, a.inputs)
    videos, others = split_videos(a.inputs)
    if videos:
        from landmask.video import landmarks_with_videos
        records, s = landmarks_with_videos(videos, others, make_landmarker(video_threads(a)), json_path, a.csv, a.smooth,
                                           a.detect_every, console(a))
    else:
        records, s = landmarks_files(a.inputs, make_landmarker(a), json_path, a.csv, console(a))
    if json_path == "-":
        from landmask.batch import records_json
        print(records_json(records), end="")
    report_failures(a, s)
    print(s.line(), file=sys.stderr)
    return 1 if s.failed else 0


def add_camera(sub):
    p = sub.add_parser("camera", help="live masking from a camera or a stream (rtsp://, http://, a file)",
                       epilog="examples:\n  landmask camera --device 0 -o live.mp4        # Ctrl-C finishes live.mp4\n"
                              "  landmask camera --url rtsp://192.168.1.20/stream --show   # watch on "
                              "http://127.0.0.1:8001/\n  landmask camera --url clip.mp4 -o masked.mp4 --face blur",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--device", type=int, metavar="N", help="camera index (default 0)")
    src.add_argument("--url", help="a stream or file FFmpeg reads (rtsp://, http://, udp://, a path)")
    p.add_argument("-o", "--out", help="write the masked video here (mp4, mkv, webm, ...); finished cleanly on Ctrl-C")
    p.add_argument("--show", action="store_true", help="serve the masked frames to a browser (MJPEG at "
                   "http://127.0.0.1:PORT/; no GUI toolkit needed)")
    p.add_argument("--port", type=int, default=8001, help="port for --show (default 8001)")
    p.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--overwrite", action="store_true", help="replace -o if it exists")
    add_effect_options(p)
    p.add_argument("--feather", type=float, help="soft edge in pixels (default: 2%% of the eye distance)")
    add_video_options(p)
    add_runtime_options(p)
    p.set_defaults(func=cmd_camera)


def cmd_camera(a):
    from landmask.camera import FrameSource, MjpegServer, run_camera
    from landmask.video import VideoMasker
    if a.out and Path(a.out).suffix.lower() not in (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"):
        raise LandmaskError(f"-o {a.out}: give a video file name ending in .mp4, .mov, .mkv, .webm or .avi")
    if a.url is not None and a.out:
        for local in url_paths(a.url):
            same = (Path(local).exists() and Path(a.out).exists() and os.path.samefile(local, a.out)) \
                or Path(local).resolve() == Path(a.out).resolve()
            if same:
                raise LandmaskError(f"-o {a.out}: would overwrite the input --url; choose another name")
    if a.out and Path(a.out).is_dir():
        raise LandmaskError(f"-o {a.out}: is a folder; give a video file name")
    if a.out and Path(a.out).exists() and not a.overwrite:
        raise LandmaskError(f"-o {a.out}: already exists; give --overwrite to replace it, or another name")
    if a.device is not None and a.device < 0:
        raise LandmaskError(f"--device {a.device}: give a camera index, 0 or more")
    if a.frames is not None and a.frames < 1:
        raise LandmaskError(f"--frames {a.frames}: give 1 or more frames")
    if not 0 < a.port < 65536:
        raise LandmaskError(f"--port {a.port}: must be from 1 to 65535")
    masker = VideoMasker(make_landmarker(video_threads(a)), lips=a.lips, eyes=a.eyes, eyebrows=a.eyebrows, face=a.face,
                         feather=a.feather, smooth=a.smooth, detect_every=a.detect_every)
    source = FrameSource(device=a.device if a.url is None else None, url=a.url)
    show = None
    if a.show:
        try:
            show = MjpegServer(a.port)
        except OSError as e:
            source.close()
            raise LandmaskError(f"--port {a.port}: cannot serve ({e.strerror})") from None
        print(f"showing on {show.url}", flush=True)
    print(f"{source.name}: masking; Ctrl-C stops" + (f" and finishes {a.out}" if a.out else ""), flush=True)
    try:
        r = run_camera(source, masker, a.out, show, console(a), max_frames=a.frames)
    finally:
        if show is not None:
            show.close()
    print(f"{r['frames']} frames, {r['fps']:.1f} fps, a face in {r['frames_with_faces']}"
          + (f"; wrote {a.out}" if a.out and r["frames"] else "") + (f" (stopped by {r['stopped_by']})" if r["interrupted"] else ""))
    return 143 if r["stopped_by"] == "SIGTERM" else 0


NETWORK_SCHEMES = {"http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "rtmpe", "rtp", "srtp", "udp", "tcp",
                   "tls", "srt", "rist", "mms", "mmsh", "mmst", "ftp", "sftp", "gopher", "gophers", "icecast", "hls", "ws", "wss"}


def url_paths(url: str) -> list[str]:
    """The local files a --url may name: itself (a plain path), none for network URLs, and for any
    other (``file:``, and FFmpeg's wrappers around a file: ``async:``, ``cache:``, ``subfile,,…,:``,
    ``concat:a|b``, nested) every text after a colon or a ``|``, both as FFmpeg opens it (literally)
    and percent-decoded; ``file://host/path`` forms as /path."""
    from urllib.parse import unquote
    scheme, sep, _ = url.partition(":")
    if not sep or len(scheme) == 1:            # a path (or a drive letter, C:/x)
        return [url]
    if scheme.lower() in NETWORK_SCHEMES:
        return []
    paths = []
    for i, ch in enumerate(url):
        if ch != ":":
            continue
        for rest in url[i + 1:].split("|"):
            if rest.startswith("//"):          # file:///path, file://host/path → /path
                rest = rest[2:]
                rest = rest[rest.find("/"):] if "/" in rest else rest
            for p in (rest, unquote(rest)):
                if p and p not in paths:
                    paths.append(p)
    return paths


def channel_list(text: str) -> list[int]:
    """``--channels 16,16,48,64,96``: five positive whole numbers."""
    try:
        c = [int(v) for v in text.split(",")]
    except ValueError:
        c = []
    if len(c) != 5 or min(c) < 1 or max(c) > 4096:
        raise argparse.ArgumentTypeError(f"{text!r}: five widths from 1 to 4096, comma-separated (e.g. 16,16,48,64,96)")
    return c


def add_train_detector(sub):
    p = sub.add_parser("train-detector", help="train landmask's face detector from landmark data sets")
    p.add_argument("--data", nargs="+", metavar="SPEC", help="the data sets (not with --resume: the run's own)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--canvas", type=int, help="training crop side in pixels")
    p.add_argument("--lr", type=float)
    p.add_argument("--width", type=float)
    p.add_argument("--channels", type=channel_list, metavar="C,C,C,C,C",
                   help="the five stages' widths (strides 2, 4, 8, 16, 32; default from --width: 16,24,48,64,96); "
                        "multiples of 16 suit ONNX Runtime's AVX-512 kernels")
    p.add_argument("--negative-photos", nargs="+", metavar="PATH",
                   help="folders or files of photos without a human face (animals, objects; transparency used), "
                        "pasted onto background tiles as hard negatives")
    p.add_argument("--negatives", type=float, help="share of mosaic tiles that are face-free background (default 0.15)")
    p.add_argument("--animals", type=float,
                   help="share of those tiles that get a --negative-photos picture pasted on (default 0.6)")
    p.add_argument("--occlude", type=float,
                   help="share of faces drawn with a box of a random shade over the mouth or one eye (default 0)")
    p.add_argument("--occlude-min-face", type=float, metavar="PX",
                   help="cover only faces placed at least PX pixels on the canvas (default 0: any size)")
    p.add_argument("--blur-faces", type=float, metavar="P",
                   help="share of canvas tiles (photos and face-free pieces) blurred by a Gaussian of a random "
                        "sigma up to --blur-face-max x the face size drawn for the tile: out-of-focus and moving "
                        "faces (default 0)")
    p.add_argument("--blur-face-max", type=float, metavar="F",
                   help="the largest blur sigma as a fraction of the face's size (default 0.04)")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--init", help="start from this detector (.onnx export or .safetensors)")
    p.add_argument("--steps", type=int, help="steps per epoch (default: one pass over the faces)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.set_defaults(func=cmd_train_detector)


def cmd_train_detector(a):
    from landmask.detect_train import DetectTrainConfig, train_detector
    keys = ("data", "out", "epochs", "batch_size", "canvas", "lr", "width", "channels", "seed", "threads", "limit", "init",
            "steps", "negative_photos", "negatives", "animals", "occlude", "occlude_min_face", "blur_faces",
            "blur_face_max")
    if not a.data and not a.resume:
        raise LandmaskError("train-detector: give --data SPEC... (the data sets to learn face boxes from)")
    cfg = DetectTrainConfig(**{k: getattr(a, k) for k in keys if getattr(a, k) is not None})
    ignored = [k for k in keys if k not in ("out", "threads") and getattr(a, k) is not None]
    if a.blur_face_max is not None and not a.blur_faces and not a.resume:
        print("landmask: --blur-face-max has no effect without --blur-faces P (the share of tiles blurred)",
              file=sys.stderr)
    if a.resume and ignored:   # a resumed run keeps its own settings (its config.yaml)
        print("landmask: --resume continues the run as it was set up; ignored: "
              + ", ".join("--" + k.replace("_", "-") for k in ignored), file=sys.stderr)
    print(f"detector: {train_detector(cfg, console(a), resume=a.resume)}")
    return 0


def add_calibrate(sub):
    p = sub.add_parser("calibrate", help="set a model's face check, mirror shift and typical point confidence "
                                         "from held-out faces (training does this itself at the end)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="training run folder: its own validation faces")
    g.add_argument("--model", help="a .safetensors model file, calibrated on the faces `landmask train` "
                                   "would hold out of --data (5 %%, seed 0)")
    d = p.add_mutually_exclusive_group()
    d.add_argument("--data", nargs="+", metavar="SPEC", help="with --model: the data sets it was trained on")
    d.add_argument("--faces", nargs="+", metavar="SPEC",
                   help="with --model: calibrate on every face of these data sets instead (faces it never trained "
                        "on, e.g. folders made by scripts/holdout_folder.py --held)")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(a):
    from landmask.calibrate import calibrate_faces, calibrate_heldout, calibrate_run
    if a.run and (a.data or a.faces):
        raise LandmaskError("calibrate --run uses the run's own validation faces; --data and --faces go with --model")
    if a.run:
        calibrate_run(a.run, console(a))
    elif a.faces:
        calibrate_faces(a.model, a.faces, console(a))
    else:
        calibrate_heldout(a.model, a.data, console(a))
    return 0


def add_train_face_check(sub):
    p = sub.add_parser("train-face-check", help="learn which refined crops hold a human face (judged from 0.9 x "
                                                 "the face check's bar, on their confidences and pixels) from "
                                                 "training photos and photos without a person; written into the "
                                                 "model file (after calibrate; then export)")
    p.add_argument("--model", required=True, help="a calibrated .safetensors model file (then export it)")
    p.add_argument("--data", nargs="+", required=True, metavar="SPEC",
                   help="annotated training data (never a test set): its faces, and face-free pieces of its photos")
    p.add_argument("--negative-photos", nargs="+", metavar="PATH", default=[],
                   help="folders or files of photos without a human face (animals; cut-outs with transparency "
                        "work best), pasted on the face-free pieces")
    p.add_argument("--canvases", type=int, default=8000,
                   help="face-free canvases to search for non-face candidates (default 8000)")
    p.add_argument("--check", default="hog", choices=["hog", "cnn"],
                   help="hog (default, the shipped ibug68's): a logistic regression over the confidences and the "
                        "crop's HOG; cnn: a small CNN over the crop joined by the confidences (fewer animal and "
                        "background candidates kept in cross-validation, but no better on the photos measured: "
                        "docs/experiments.md, thirteenth session)")
    p.add_argument("--haar", action="store_true",
                   help="with --check hog: OpenCV's Viola-Jones face cascade, run on a wider crop around each "
                        "candidate, joins the features (whether it finds a face of about the candidate's size, "
                        "and how surely)")
    p.add_argument("--candidates", metavar="FILE.npz",
                   help="save the mined candidates here, or read them from here where the file exists (mining "
                        "is most of the time; reuse it only with the same --model, --data, --negative-photos, "
                        "--canvases and --seed; --blurred-faces, --noisy-faces and --bar-fraction must match the "
                        "file's, which it records; a file mined with --haar serves fits with or without it)")
    p.add_argument("--bar-fraction", type=float, default=0.9, metavar="F",
                   help="judge crops down to F x the plain face check's bar (default 0.9); below it a crop is no face")
    p.add_argument("--blurred-faces", action="store_true",
                   help="each training face once more in its photo blurred (a Gaussian of 1.5-3.5 %% of the face's "
                        "size: out of focus, or moving in a video frame), the faces found there among the faces")
    p.add_argument("--noisy-faces", action="store_true",
                   help="each training photo once more shrunk until its largest face is at most 100 px and given "
                        "Gaussian noise of std 10-25 grey levels (a grainy video frame), the faces found there among "
                        "the faces")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_face_check)


def cmd_train_face_check(a):
    from landmask.face_check import train_face_check
    if a.canvases < 1:
        raise LandmaskError(f"--canvases {a.canvases}: must be 1 or more")
    train_face_check(a.model, a.data, a.negative_photos, a.canvases, a.seed, console(a), a.check, a.haar,
                     a.candidates, a.bar_fraction, a.blurred_faces, a.noisy_faces)
    return 0


def add_evaluate(sub):
    p = sub.add_parser("evaluate", help="score a model on an annotated data set", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="annotated data set (format found by itself)")
    p.add_argument("--model", help="model file, run folder or shipped name (default: the data scheme's; ibug68 "
                                   "runs as ibug68-int8 on CPUs with 8-bit dot products)")
    p.add_argument("--boxes", default="landmarks", choices=["landmarks", "detect"],
                   help="face boxes from the ground-truth points, or from the face detector")
    p.add_argument("--flip", action="store_true", help="test-time flip averaging")
    p.add_argument("--detector", default="landmask", help="with --boxes detect: landmask, haar or dlib")
    p.add_argument("--scout", default="auto", metavar="MODEL", help="with --boxes detect: " + SCOUT_HELP)
    p.add_argument("--backend", choices=["onnx", "torch"])
    p.add_argument("--threads", type=int)
    p.add_argument("--json", metavar="FILE", help="write the results as JSON (- for stdout)")
    p.add_argument("--ced", metavar="PNG", help="draw the CED plot (cumulative error distribution) into PNG")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a):
    import json
    from landmask.evaluate import evaluate
    from landmask.imageio import write_text_atomic
    from landmask.batch import check_output_file
    if a.json == "-" and sys.stdout is None:   # started with it closed (>&-): nothing would arrive
        raise LandmaskError("--json -: the standard output is closed; give a file name")
    root = a.data if Path(a.data).is_dir() else Path(a.data).parent   # refused before the evaluation, not after
    check_output_file(a.json, "--json", [a.data], data_root=root)
    by_name = Path(a.data).is_dir() or Path(a.data).suffix.lower() in (".pts", ".ljson")   # a photo beside its annotation
    check_output_file(a.ced, "--ced", [a.data], image=True, data_root=root, photos_by_name=by_name)
    if a.ced and Path(a.ced).suffix.lower() != ".png":
        raise LandmaskError(f"--ced {a.ced}: the plot is written as PNG; give a .png name")
    detector = None
    if a.boxes == "detect":
        from landmask.detect import get_detector
        detector = get_detector(a.detector)
    from functools import partial
    from landmask.torch_backend import load_landmark_model
    r = evaluate(a.data, a.model, a.boxes, flip=a.flip, ced_path=a.ced or None, threads=a.threads,
                 detector=detector, scout=a.scout, load_model=partial(load_landmark_model, backend=a.backend),
                 reporter=console(a))
    if a.json == "-":
        print(json.dumps(r, indent=1))
    else:
        print(format_table(r))
        if a.json:
            write_text_atomic(a.json, json.dumps(r, indent=1) + "\n")
    return 0


def format_table(r: dict) -> str:
    lines = [f"model {r['model']} ({r['scheme']}, {r['backend']}) on {r['data']} ({r['data_scheme']}), "
             f"boxes from {r['boxes']}" + (", flip" if r["flip"] else "")
             + (f", first pass by {Path(r['scout']).name}" if r.get("scout") else "")]
    keys = [("n_faces", "faces", "{:d}"), ("detected_percent", "detected %", "{:.2f}"),
            ("nme_percent", "NME %", "{:.3f}"), ("rmse_px96", "RMSE (Kaggle px)", "{:.3f}"),
            ("failure_percent", "failures (NME>8%) %", "{:.2f}"), ("auc8", "AUC@8%", "{:.4f}"),
            ("mae_px", "MAE px", "{:.3f}"), ("rmse_px", "RMSE px", "{:.3f}")]
    lines += [f"  {label:<22}" + ("n/a" if r[k] is None else fmt.format(r[k])) for k, label, fmt in keys if k in r]
    worst = sorted(((n, v) for n, v in r["per_landmark"].items() if v is not None), key=lambda kv: -kv[1])
    lines.append("  per landmark NME % (worst first): " + ", ".join(f"{n} {v:.2f}" for n, v in worst[:8]))
    if r.get("partial_faces"):
        lines.append(f"  {r['partial_faces']} face(s) partly annotated: scored on their known points only")
    if r.get("faces_with_points_outside_image"):
        lines.append(f"  {r['faces_with_points_outside_image']} face(s) annotated beyond the image's edge, e.g. "
                     + "; ".join(r["points_outside_image"][:3]))
    for s in r.get("skipped", []):
        lines.append(f"  skipped: {s}")
    return "\n".join(lines)


def add_convert(sub):
    p = sub.add_parser("convert", help="write a data set as Kaggle CSV and/or a 300-W folder",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, nargs="+", help="data sets to read")
    p.add_argument("--kaggle", metavar="DIR", help="write DIR/training.csv (96×96 Kaggle-scale crops, 15 points)")
    p.add_argument("--kaggle-test", metavar="DIR",
                   help="write DIR/test.csv + IdLookupTable.csv + solution.csv (for scoring)")
    p.add_argument("--pts", metavar="DIR", help="write a 300-W folder (images + .pts)")
    p.add_argument("--drop-partial", type=float, default=0.0, metavar="F",
                   help="fraction of Kaggle training rows keeping only 4 of 15 points, as in the real set")
    p.add_argument("--relabel", metavar="MODEL",
                   help="write MODEL's points instead of the data's own (each face cropped from the box of "
                        "its own points): pseudo-labels in the style of the data MODEL was trained on")
    p.add_argument("--flip", action="store_true", help="with --relabel: average with the mirrored crop's points")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_convert)


def cmd_convert(a):
    from landmask.convert import convert
    model = None
    if a.relabel:
        from landmask.torch_backend import load_landmark_model   # a run folder's .safetensors runs in PyTorch
        try:
            model = load_landmark_model(a.relabel)
        except LandmaskError as e:      # its message names --model, the option of the other commands
            raise LandmaskError(str(e).replace("--model", "--relabel", 1)) from None
    results = convert(a.data, a.kaggle, a.kaggle_test, a.pts, model, a.flip, a.drop_partial, a.seed, console(a))
    for flag, r in results.items():
        print(f"{flag} {r['out']}: {r['rows']} faces written, {len(r['skipped'])} skipped")
        for s in r["skipped"]:
            print(f"  skipped {s}")
    return 0


def add_export(sub):
    p = sub.add_parser("export", help="export a model to ONNX (checked against PyTorch)")
    p.add_argument("--model", required=True, help="a .safetensors model (landmarks or detector) or run folder")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx")
    p.add_argument("--scheme", help="output another scheme's points, converted by the scheme table "
                                    "(kaggle15 from an ibug68 model); also writes OUT.safetensors")
    p.add_argument("--int8", metavar="DATA",
                   help="write an 8-bit model instead, calibrated on faces of DATA (training data, never the "
                        "test set) and checked against PyTorch on other faces of it")
    p.add_argument("--int8-faces", type=int, default=300, metavar="N",
                   help="faces of --int8 DATA to use, half to calibrate and half to check (default 300)")
    p.add_argument("--min-score", type=float, metavar="S",
                   help="a face detector's default --min-score (centre-score threshold, 0-1), stored in the file "
                        "(files without one use 0.4)")
    p.add_argument("--min-score-plain", type=float, metavar="S",
                   help="a face detector's default --min-score with landmark models that have no learned face "
                        "check (ibug68-fast, -tiny, kaggle15, --no-refine), stored in the file (default: --min-score)")
    p.set_defaults(func=cmd_export)


def add_ensemble(sub):
    p = sub.add_parser("ensemble", help="several trained landmark models as one (their mean points), for "
                                        "accuracy over speed; calibrate, then export it")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="landmark models (.safetensors, run folders or shipped names) of one scheme and crop rule")
    p.add_argument("--out", required=True, metavar="OUT.safetensors")
    p.add_argument("--half", action="store_true",
                   help="store the convolution weights in 16 bits (here and in its ONNX export): half the size")
    p.set_defaults(func=cmd_ensemble)


def cmd_ensemble(a):
    from landmask.export import make_ensemble
    r = make_ensemble(a.models, a.out, a.half)
    print(f"wrote {a.out}: {len(r['members'])} members, {r['input_size']} px crops, {r['parameters']:,} parameters; "
          f"next: landmask calibrate --model {a.out} --faces DIR... (faces none of its members trained on), then export")
    return 0


def cmd_export(a):
    from landmask.export import export_model
    r = export_model(a.model, a.onnx, a.scheme, a.int8, a.int8_faces, a.min_score, a.min_score_plain)
    if r["derived"]:
        print(f"wrote {r['derived']} ({a.scheme} points from the model's own)")
    if r["int8"]:
        print(f"wrote {a.onnx} (8-bit, opset {r['opset']}, calibrated on {r['n_calibration']} faces); PyTorch vs "
              f"ONNX Runtime on {r['n_checked']} other faces: mean abs difference {r['mean_abs_diff_px']:.3f} px, "
              f"max {r['max_abs_diff_px']:.3f} px")
    else:
        print(f"wrote {a.onnx} (opset {r['opset']}); PyTorch vs ONNX Runtime on {r['n_checked']} crops: "
              f"max abs difference {r['max_abs_diff_px']:.2e} px")
    return 0


def add_submit(sub):
    p = sub.add_parser("submit", help="Kaggle: predict test.csv and write a submission via IdLookupTable.csv")
    p.add_argument("--test", required=True, help="Kaggle test.csv")
    p.add_argument("--lookup", required=True, help="IdLookupTable.csv")
    p.add_argument("--out", required=True, help="submission CSV to write")
    p.add_argument("--model", help="kaggle15 model (default: the shipped one)")
    p.add_argument("--solution", help="a solution.csv (RowId,Location) to score the submission against")
    p.set_defaults(func=cmd_submit)


def cmd_submit(a):
    from landmask.convert import score_submission, write_submission
    from landmask.torch_backend import load_landmark_model   # a run folder's .safetensors runs in PyTorch
    keep = [(o, f) for o, f in (("--solution", a.solution), ("--model", a.model)) if f]   # never replaced by --out
    r = write_submission(a.test, a.lookup, a.out, load_landmark_model(a.model, "kaggle15"), keep=keep)
    print(f"wrote {a.out}: {r['rows']} rows for {r['images']} images")
    if a.solution:
        print(f"RMSE against {a.solution}: {score_submission(a.out, a.solution):.4f}")
    return 0


def add_serve(sub):
    p = sub.add_parser("serve", help="web page, camera page and HTTP API (needs pip install 'landmask[serve]')",
                       epilog="examples:\n  landmask serve                          # http://127.0.0.1:8000/\n"
                              "  landmask serve --host 0.0.0.0 --port 8080 --workers 2 --model ibug68-fast-int8\n"
                              "  curl -F image=@photo.jpg -F lips=blur http://127.0.0.1:8000/v1/mask -o masked.jpg",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="worker processes, each loading the model once (default 1)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body (default 20)")
    p.add_argument("--max-megapixels", type=float, default=40.0, help="largest photo, checked before decoding "
                   "(default 40)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per request, queueing included (default 15)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(a):
    try:
        from landmask.server import Settings, check_listen, check_settings, serve
    except ImportError as e:
        raise LandmaskError(f"serve needs the serve extra: pip install 'landmask[serve]' ({e.name} is missing)") from None
    for opt, v in (("--port", a.port), ("--workers", a.workers), ("--max-upload-mb", a.max_upload_mb),
                   ("--max-megapixels", a.max_megapixels), ("--timeout", a.timeout)):
        if not v > 0 or (opt == "--port" and v > 65535):
            raise LandmaskError(f"{opt} {v}: must be positive" + (" and at most 65535" if opt == "--port" else ""))
    settings = Settings(model=a.model, detector=a.detector, scout=a.scout, detect_size=a.detect_size, min_face=a.min_face,
                        max_faces=a.max_faces, min_score=a.min_score, threads=a.threads or 1,
                        max_upload_bytes=int(a.max_upload_mb * 2**20), max_pixels=int(a.max_megapixels * 1e6),
                        timeout_s=a.timeout)
    check_listen(a.host, a.port)   # before the model loads
    check_settings(settings)
    print(f"landmask serve: http://{a.host}:{a.port}/ (camera: /camera, API schema: /openapi.json), {a.workers} worker(s); "
          "Ctrl-C stops", flush=True)
    serve(settings, a.host, a.port, a.workers)
    return 0


def console(a):
    """The run's one progress reporter (stderr; --quiet shows failures and warnings only)."""
    from landmask.report import ConsoleReporter
    if getattr(a, "_reporter", None) is None:
        a._reporter = ConsoleReporter(quiet=getattr(a, "quiet", False))
    return a._reporter


def report_failures(a, s) -> None:
    """Each failed item once: those the run did not already show as it went."""
    for f in s.failed:
        console(a).failed(f)


def build_parser():
    p = Parser(prog="landmask", description="Facial landmarks and lip/eye masking with a small CNN of its own.",
               epilog=EXAMPLES,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    from landmask import __version__
    p.add_argument("--version", action="version", version=f"landmask {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_mask(sub)
    add_landmarks(sub)
    add_camera(sub)
    add_train(sub)
    add_train_detector(sub)
    add_calibrate(sub)
    add_train_face_check(sub)
    add_evaluate(sub)
    add_convert(sub)
    add_export(sub)
    add_ensemble(sub)
    add_submit(sub)
    add_serve(sub)
    for sp in sub.choices.values():
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info lines: failures, warnings and the result only")
    return p


# Numeric options checked before any file is read or written: (option, whole number?, least, most).
# Each is checked wherever a subcommand has it; training options are checked by TrainConfig.check.
OPTION_RANGES = {
    "feather": ("--feather", False, 0, 1000), "detect_size": ("--detect-size", True, 32, 4096),
    "min_face": ("--min-face", False, 1, 100_000), "max_faces": ("--max-faces", True, 1, 100_000),
    "threads": ("--threads", True, 1, 1024), "quality": ("--quality", True, 1, 100),
    "drop_partial": ("--drop-partial", False, 0, 1), "int8_faces": ("--int8-faces", True, 2, 1_000_000),
    "smooth": ("--smooth", False, 0, 1000), "detect_every": ("--detect-every", True, 1, 1_000_000),
 "max_upload_mb": ("--max-upload-mb", False, 0.001, 1_000_000),
    "max_megapixels": ("--max-megapixels", False, 0.001, 100_000), "timeout": ("--timeout", False, 0.001, 86_400),
}
DETECTOR_TRAIN_RANGES = {
    "epochs": ("--epochs", True, 1, 100_000), "batch_size": ("--batch-size", True, 1, 65_536),
    "canvas": ("--canvas", True, 32, 4096), "lr": ("--lr", False, 1e-12, 10), "width": ("--width", False, 0.05, 16),
    "limit": ("--limit", True, 1, 10**12), "steps": ("--steps", True, 1, 10**9),
    "negatives": ("--negatives", False, 0, 1), "animals": ("--animals", False, 0, 1),
    "occlude": ("--occlude", False, 0, 1), "occlude_min_face": ("--occlude-min-face", False, 0, 4096),
    "blur_faces": ("--blur-faces", False, 0, 1), "blur_face_max": ("--blur-face-max", False, 0, 1),
}


def check_options(a) -> None:
    """Refuse a numeric option out of range (or nan/inf) with one line naming it."""
    import math
    if a.command in ("train", "train-detector") and Path(a.out).is_file():
        raise LandmaskError(f"--out {a.out}: is a file; give a run folder")
    ranges = dict(OPTION_RANGES, **(DETECTOR_TRAIN_RANGES if a.command == "train-detector" else {}))
    if a.command in ("convert", "train-face-check"):     # numpy's seeds
        ranges["seed"] = ("--seed", True, 0, 2**32 - 1)
    for attr, (opt, whole, lo, hi) in ranges.items():
        v = getattr(a, attr, None)
        if v is None:
            continue
        if not math.isfinite(v) or not lo <= v <= hi:
            kind = "a whole number" if whole else "a number"
            show = (lambda x: f"{int(x)}") if whole else (lambda x: f"{x:g}")
            raise LandmaskError(f"{opt} {v}: must be {kind} from {show(lo)} to {show(hi)}")
    from landmask.pool import usable_cores
    threads, cores = getattr(a, "threads", None), usable_cores()
    if threads is not None and threads > 2 * cores:
        print(f"landmask: warning: --threads {threads} is far more than this machine's {cores} cores; "
              f"it will run much slower than --threads {cores}", file=sys.stderr)


def main(argv=None) -> int:
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        utf8 = (getattr(stream, "encoding", "") or "").lower().replace("-", "") == "utf8"
        try:   # file names that are not UTF-8 print as their own bytes (or escaped), not as a traceback
            stream.reconfigure(errors=errors if utf8 else "backslashreplace")
        except (AttributeError, ValueError):
            pass
    args = build_parser().parse_args(argv)
    previous = _stop_on_sigterm()
    stdout, stderr = sys.stdout, sys.stderr
    if stderr is None:   # started with it closed (2>&-): messages go nowhere, not into the standard output
        import os
        sys.stderr = open(os.devnull, "w")
    if stdout is not None and not isinstance(stdout, GuardedStdout):
        sys.stdout = GuardedStdout(stdout)
    try:
        check_options(args)
        code = args.func(args)
        if sys.stdout is not None:
            sys.stdout.flush()   # here, so that a full disk is this command's error, not a message at exit
        return code
    except StdoutError as e:
        print(f"landmask: error: {e}", file=sys.stderr)
        _quiet_stdout(stdout)
        return 2
    except LandmaskError as e:
        print(f"landmask: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("landmask: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("landmask: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # output piped into a command that stopped reading (| head): no traceback
        _quiet_stdout(stdout)
        return 141
    finally:
        sys.stdout = stdout
        if stderr is None:
            sys.stderr.close()
            sys.stderr = None
        if previous is not None:
            import signal
            signal.signal(signal.SIGTERM, previous)


class StdoutError(LandmaskError):
    """The standard output could not take what was written to it (a full disk, > /dev/full)."""


class GuardedStdout:
    """sys.stdout during a command: a write or flush that fails (other than a broken pipe, which
    ends the command quietly) is one StdoutError instead of a traceback from wherever it printed."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._guarded(self._stream.write, text)

    def flush(self):
        return self._guarded(self._stream.flush)

    @staticmethod
    def _guarded(fn, *args):
        try:
            return fn(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise StdoutError(f"cannot write to the standard output ({e.strerror or e})") from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _quiet_stdout(stream) -> None:
    """Send the standard output to /dev/null, so that what is left in its buffer does not fail again
    when Python exits."""
    import os
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _stop_on_sigterm():
    """Make SIGTERM raise Terminated in the main thread; returns the handler it replaced (None
    where it cannot be set: not the main thread)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()
    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
