#!/usr/bin/env bash
# Several `landmask train --device cuda` runs side by side on one lent GPU, each sized to a time budget
# (nineteenth session; docs/experiments.md).  Training is bound by the CPU that cuts the augmented crops
# (3600-4300 a second on one core of the 2-core machine; 850-1860 images/s per run trained there), so the runs
# share the GPU, one core each (--workers N, newer than these runs, gives one run more cores).
#   1. a one-epoch smoke run (does CUDA training work here at all?);
#   2. a probe: every run for 3 epochs on 800 faces, side by side, for its images/s;
#   3. the runs themselves, side by side, with as many epochs as fit BUDGET seconds at PACE × the probe's
#      pace (a one-cycle schedule must know its length: a run cut short ends at a high learning rate).
#      PACE 0.45: in the nineteenth session the six runs trained at 0.46-0.50 × their probes' pace (the
#      probes' short epochs barely overlapped), so the runs planned at 0.8 × were cut off half-way;
#   4. every run is stopped DEADLINE seconds after the start at the latest, so that their files are
#      packed into OUTDIR before the machine's own limit (what a stopped run leaves: its last --save-every).
# Data: a packed folder (scripts/pack_faces.py) of the HELEN + LFPW training faces minus the held-out ones.
#   DATA=runs/pack-hl BUDGET=420 OUTDIR=$OUT bash scripts/gpu_runs.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
DATA=${DATA:-runs/pack-hl}
BUDGET=${BUDGET:-420}
PACE=${PACE:-0.45}
DEADLINE=${DEADLINE:-540}
OUTDIR=${OUTDIR:-runs/gpu-out}
DEVICE=${DEVICE:-cuda}
PROBE_LIMIT=${PROBE_LIMIT:-800}   # faces in the probe runs
LIMIT=${LIMIT:-0}                 # faces in the runs (0: all; a dry run on a CPU uses a few)
R=runs/gpu
M=landmask/models
mkdir -p $R "$OUTDIR"
A112="--input-size 112 --width 1.5 --depth8 4 --depth16 5 --crop-scale 1.3"
declare -A RUNS=(
  [ft112]="--init $M/ibug68.safetensors $A112 --lr 5e-4 --box-jitter 0.5 --flip-prob 0 --blur-prob 0.4 --blur-max 3.5"
  [sc112]="$A112 --lr 3e-3 --flip-prob 0 --blur-prob 0.4 --blur-max 3.5"
  [teach128]="--input-size 128 --width 2.5 --depth8 5 --depth16 6 --crop-scale 1.3 --lr 3e-3 --flip-prob 0 --blur-prob 0.4 --blur-max 3.5"
  [ftfast96]="--init $M/ibug68-fast.safetensors --input-size 96 --crop-scale 1.3 --lr 5e-4 --flip-prob 0"
  [scfast96]="--input-size 96 --crop-scale 1.3 --lr 3e-3 --flip-prob 0"
  [fttiny80]="--init $M/ibug68-tiny.safetensors --width 0.75 --crop-scale 1.3 --lr 5e-4 --flip-prob 0"
)
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
python3 -c "import torch, cv2, numpy; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0), 'cv2', cv2.__version__, 'numpy', numpy.__version__)"
nproc
stamp smoke
python3 -m landmask train --data $DATA --limit 128 --epochs 1 --device $DEVICE --out $R/smoke -q || { echo "smoke run failed"; exit 1; }
stamp probe
for n in "${!RUNS[@]}"; do
  python3 -m landmask train --data $DATA --limit $PROBE_LIMIT --epochs 3 --save-every 100 --device $DEVICE ${RUNS[$n]} \
    --out $R/probe-$n -q > $R/probe-$n.log 2>&1 &
done
wait
declare -A EPOCHS
for n in "${!RUNS[@]}"; do
  EPOCHS[$n]=$(python3 - "$R/probe-$n/history.json" "$BUDGET" "$PACE" <<'EOF'
import json, sys
h = json.load(open(sys.argv[1]))
rate = max(r["images_per_s"] for r in h[1:])     # epoch 1 holds cuDNN's kernel search
print(max(1, int(float(sys.argv[3]) * float(sys.argv[2]) * rate / 1511)))   # 1511 training faces in the full pack
EOF
) || { echo "probe $n failed:"; tail -5 $R/probe-$n.log; EPOCHS[$n]=0; }
  stamp "probe $n: ${EPOCHS[$n]} epochs"
done
stamp runs
for n in "${!RUNS[@]}"; do
  left=$(( DEADLINE - ($(date +%s) - T0) ))
  [ "${EPOCHS[$n]}" -gt 0 ] && [ $left -gt 30 ] || { echo "$n: not started (${left} s left)"; continue; }
  timeout $left python3 -m landmask train --data $DATA --limit $LIMIT --epochs ${EPOCHS[$n]} --save-every 50 --device $DEVICE \
    ${RUNS[$n]} --out $R/$n -q > $R/$n.log 2>&1 &
done
wait
stamp "runs done"
for n in "${!RUNS[@]}"; do
  echo "== $n: $(tail -1 $R/$n.log)"
  python3 - "$R/$n/history.json" <<'EOF' || true
import json, sys
h = json.load(open(sys.argv[1]))
best = min(h, key=lambda r: r["val_nme_percent"])
print(f"{len(h)} epochs, {sum(r['seconds'] for r in h):.0f} s training, median {sorted(r['images_per_s'] for r in h)[len(h) // 2]:.0f} images/s; "
      f"val NME last {h[-1]['val_nme_percent']:.3f} %, best {best['val_nme_percent']:.3f} % (epoch {best['epoch']})")
EOF
done
mv $R/teach128/model.safetensors "$OUTDIR/teach128-model.safetensors" 2>/dev/null
mv $R/teach128/best.safetensors "$OUTDIR/teach128-best.safetensors" 2>/dev/null
rm -f $R/*/last.safetensors $R/probe-*/*.safetensors $R/smoke/*.safetensors
tar czf "$OUTDIR/gpu-112.tar.gz" $R/ft112 $R/sc112          # each file that comes back: at most 16 MB
tar czf "$OUTDIR/gpu-rest.tar.gz" --exclude ft112 --exclude sc112 $R
ls -la "$OUTDIR"
stamp end
