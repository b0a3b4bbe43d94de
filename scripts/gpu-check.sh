#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA device (e.g. the worker-gpu image, or a developer's box):
#   1. the tests marked `gpu`;
#   2. the accelerator benchmark (python -m recommender.bench) on cpu and cuda;
#   3. a training run on cpu and on cuda (same synthetic shop, same config);
#   4. a batch score (the worker's RecPipeline.recommend_batch over every user) on cpu and on cuda;
# then CPU vs GPU side by side, with ratios. JSON lands in var/bench/gpu-check/.
#
# On a machine without CUDA it says so and exits 0 (nothing to check there); `--cpu-only` runs
# steps 3 and 4 on the CPU alone, to see the check itself work.
#
#   scripts/gpu-check.sh [--cpu-only] [--users N] [--epochs N]
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
OUT="${GPU_CHECK_OUT:-var/bench/gpu-check}"
USERS=4000
EPOCHS=1
CPU_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-only) CPU_ONLY=1 ;;
    --users) USERS="$2"; shift ;;
    --epochs) EPOCHS="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

cuda_info="$("$PY" - <<'EOF'
import torch
if torch.cuda.is_available():
    print(f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, torch {torch.__version__}, {torch.cuda.device_count()} device(s))")
EOF
)"

if [ -z "$cuda_info" ] && [ "$CPU_ONLY" = 0 ]; then
  torch_version="$("$PY" -c 'import torch; print(torch.__version__)')"
  echo "gpu-check: SKIPPED - no CUDA device visible to torch ${torch_version} on $(hostname)."
  echo "  Nothing to compare here. Run it where a GPU is: a checkout after make setup with CUDA torch,"
  echo "  or the GPU image (docker compose --env-file .env -f docker/compose.yaml --profile gpu run --rm"
  echo "  worker-gpu scripts/gpu-check.sh; the tests step is skipped there). --cpu-only runs the CPU half."
  exit 0
fi

mkdir -p "$OUT"
devices="cpu"
if [ "$CPU_ONLY" = 0 ]; then
  devices="cpu,cuda"
  echo "== GPU: $cuda_info"
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

  echo "== 1/4 tests marked gpu"
  if [ -d tests ] && "$PY" -c 'import pytest' 2>/dev/null; then
    "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/recommender
  else
    echo "  (no tests/ or pytest here, e.g. inside an image: run the check from a checkout after make setup)"
  fi

  echo "== 2/4 accelerator benchmark (cpu and cuda)"
  "$PY" -m recommender.bench --devices cpu,cuda --out "$OUT/bench.json"
else
  echo "== --cpu-only: steps 1 and 2 need a GPU; running the CPU half of steps 3 and 4"
fi

echo "== 3/4 training, $USERS synthetic users, $EPOCHS epoch(s)"
for d in ${devices//,/ }; do
  "$PY" -m recommender.train --synthetic-users "$USERS" --epochs "$EPOCHS" --device "$d" --no-progress \
    --out "$OUT/train-$d.json"
done

echo "== 4/4 batch score (retrieve -> rank -> rules for every user)"
"$PY" - "$OUT" "$USERS" "$devices" <<'EOF'
import json, sys, time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from recommender.config import Config
from recommender.data import build_examples, split_by_time, synthetic_shop
from recommender.pipeline import RecPipeline
from recommender.train import train

out, users, devices = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
config = Config()
config.train.progress = False
data = synthetic_shop(n_users=users, n_items=max(200, users // 2), seed=0)
examples = build_examples(data.interactions, data.items, config.data, features=config.features, seed=0)
tr, va, _ = split_by_time(examples, config.data.valid_fraction)
result = train(tr, config, valid=va)  # one model, scored on each device
user_ids = [str(u) for u in np.unique(data.interactions.user_id)]
now = int(data.interactions.timestamp.max()) + 1
chunk = 500
for device in devices:
    pipe = RecPipeline.build(history=data.interactions, items=data.items, model=result.model,
                             space=result.features, config=config, device=device)
    pipe.recommend_batch(user_ids[:chunk], now=now, k=50)  # warm-up (CUDA context, kernels)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(user_ids), chunk), desc=f"batch score on {device}", unit="chunk"):
        pipe.recommend_batch(user_ids[i:i + chunk], now=now, k=50)
    if device == "cuda":
        torch.cuda.synchronize()
    s = time.perf_counter() - t0
    report = {"device": device, "users": len(user_ids), "seconds": round(s, 3), "users_per_s": round(len(user_ids) / s, 1)}
    (out / f"batch-{device}.json").write_text(json.dumps(report, indent=2))
    print(f"  {device}: {report['users_per_s']:,.0f} users/s ({report['seconds']:.2f} s for {len(user_ids):,} users)")
EOF

echo
echo "== CPU vs GPU"
"$PY" - "$OUT" "$devices" <<'EOF'
import json, sys
from pathlib import Path

out, devices = Path(sys.argv[1]), sys.argv[2].split(",")
def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else None
rows = []
train = {d: load(f"train-{d}.json") for d in devices}
batch = {d: load(f"batch-{d}.json") for d in devices}
rows.append(("training examples/s", *[train[d] and train[d]["examples_per_s"] for d in devices]))
rows.append(("validation AUC", *[train[d] and train[d]["valid_auc"] for d in devices]))
rows.append(("batch score users/s", *[batch[d] and batch[d]["users_per_s"] for d in devices]))
bench = load("bench.json")
if bench:
    cells = [c for c in bench.get("cells", []) if c.get("precision") == "fp32" and c.get("path") == "reuse"]
    for c in cells:
        if c["device"] != "cpu":
            continue
        twin = next((x for x in cells if x["device"] == "cuda" and x["batch"] == c["batch"]), None)
        if twin:
            rows.append((f"serving p50 ms, batch {c['batch']} ({c['threads']} thr)", c["p50_ms"], twin["p50_ms"]))
head = ["", *devices] + (["cuda / cpu"] if len(devices) == 2 else [])
print(f"{head[0]:<34}" + "".join(f"{h:>14}" for h in head[1:]))
for name, *vals in rows:
    cells = [(f"{v:>14,.0f}" if abs(v) >= 100 else f"{v:>14.4f}") if isinstance(v, (int, float)) else f"{'-':>14}"
             for v in vals]
    if len(vals) == 2 and all(isinstance(v, (int, float)) and v for v in vals):
        cells.append(f"{vals[1] / vals[0]:>13.2f}x")
    print(f"{name:<34}" + "".join(cells))
(out / "summary.json").write_text(json.dumps({"devices": devices, "rows": rows}, indent=2))
print(f"wrote {out}/summary.json")
EOF
