#!/usr/bin/env bash
# Download, here (where PyPI is reachable), the wheels the GPU machine lacks into benchmarks/wheels/ (gitignored), for the
# GPU machine's Python (3.12, CPython, manylinux x86_64). benchmarks/gpu_suite.sh installs from that folder, offline, the
# ones whose import fails there. The GPU machine has torch, torchvision, numpy, pandas, pytest, ... (see the device's
# KINDS.md); torch itself is never carried (its own build for the GPU is there, and it is gigabytes).
#
#   bash benchmarks/gpu_wheels.sh                    # ~25 MB: timm open_clip_torch ftfy wcwidth submitit fastcore tensorboard ...
#   GPU_PYTHON=3.11 bash benchmarks/gpu_wheels.sh    # for another Python on the GPU machine
#
# Versions: settings.ini's exact pins where it pins the package (timm, open_clip_torch, submitit, tensorboard, fastcore);
# otherwise the version installed in this project's .venv (the one the tests ran with here), else the newest.
# --no-deps: every dependency that the GPU machine lacks is named here itself; the rest (torch, torchvision, regex, tqdm,
# huggingface_hub, safetensors, pyyaml, cloudpickle, typing_extensions, packaging, absl-py, markdown, werkzeug, numpy,
# pillow, setuptools) is there already.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}; [ -x "$PY" ] || PY=python3
GPU_PYTHON=${GPU_PYTHON:-3.12}
DEST=benchmarks/wheels
# the packages: pure Python ones first, then compiled ones (binary wheels for the GPU machine's Python)
PKGS=(timm open_clip_torch ftfy wcwidth submitit fastcore tensorboard tensorboard-data-server protobuf grpcio)

version_of() {   # settings.ini's pin, else the version in this .venv, else empty (newest)
  "$PY" - "$1" <<'EOF'
import configparser, re, sys
name = sys.argv[1]
c = configparser.ConfigParser(); c.read("settings.ini")
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
for key in ("requirements", "dev_requirements", "torch_requirements"):
    for req in c["DEFAULT"].get(key, "").split():
        n, _, v = req.partition("==")
        if norm(n) == norm(name) and v: print(v); sys.exit()
try:
    from importlib.metadata import version
    print(version(name))
except Exception:
    print("")
EOF
}

mkdir -p "$DEST"
specs=()
for p in "${PKGS[@]}"; do
  v=$(version_of "$p")
  specs+=("$p${v:+==$v}")
done
echo "[gpu_wheels] downloading for CPython $GPU_PYTHON manylinux x86_64 into $DEST: ${specs[*]}"
plat=()
for t in manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 \
         manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
  plat+=(--platform "$t")
done
# pip's notices about local index folders it does not use are noise: keep everything else
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$GPU_PYTHON" --implementation cp "${plat[@]}" \
  -d "$DEST" "${specs[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
# one version of each package only (two stop an install): drop wheels of these packages whose version is not the one asked for
"$PY" - "$DEST" "${specs[@]}" <<'EOF'
import re, sys
from pathlib import Path
dest, specs = Path(sys.argv[1]), sys.argv[2:]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
want = {norm(s.partition("==")[0]): s.partition("==")[2] for s in specs}
for w in sorted(dest.glob("*.whl")):
    name, ver = w.name.split("-")[:2]
    if norm(name) in want and want[norm(name)] and ver != want[norm(name)]:
        print(f"[gpu_wheels] removing {w.name} (not the version asked for)"); w.unlink()
EOF
ls -l "$DEST"
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
echo "[gpu_wheels] $(ls "$DEST"/*.whl | wc -l) wheels, $((total / 1024 / 1024)) MiB in $DEST (the device carries at most 64 MiB with the working tree: carry=[\"$DEST\"])"
