#!/usr/bin/env bash
# The GPU suite in one command (issue 30): install, offline, what the GPU machine lacks from benchmarks/wheels/ (made here by
# benchmarks/gpu_wheels.sh and carried along), then run benchmarks/gpu_suite.py with the arguments given.
#
#   bash benchmarks/gpu_suite.sh                       # all parts, results in benchmarks/results/<device>-<date>.md/.json/.log
#   bash benchmarks/gpu_suite.sh --out "$OUT"          # on the device tool's machine: the results come back from $OUT
#   bash benchmarks/gpu_suite.sh --smoke --out /tmp/r  # the CPU rehearsal
#
# A package is installed from the wheels when its import fails, and, for the pure-Python packages that smrnb is pinned
# against (timm, open_clip_torch, submitit, fastcore), also when the installed version is not settings.ini's pin. They go
# to $SMRNB_SITE (default /tmp/smrnb-site) with --no-deps, which is put first on PYTHONPATH: the machine's own packages
# are left as they are.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
WHEELS=benchmarks/wheels
SITE=${SMRNB_SITE:-/tmp/smrnb-site}
[ -d "$SITE" ] && export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

# "name==version" of each carried package this Python needs (missing, or a pinned pure-Python one at another version)
need=$("$PY" - <<'EOF'
import configparser, importlib, re
from importlib.metadata import version
c = configparser.ConfigParser(); c.read("settings.ini")
pins = {}
for key in ("requirements", "dev_requirements"):
    for req in c["DEFAULT"].get(key, "").split():
        n, _, v = req.partition("=="); pins[re.sub(r"[-_.]+", "-", n).lower()] = v
# distribution, module to import, whether a version other than the pin counts as missing
carried = [("timm", "timm", True), ("open_clip_torch", "open_clip", True), ("ftfy", "ftfy", False), ("wcwidth", "wcwidth", False),
           ("submitit", "submitit", True), ("fastcore", "fastcore", True), ("tensorboard", "tensorboard", False),
           ("tensorboard-data-server", "tensorboard_data_server", False), ("protobuf", "google.protobuf", False),
           ("grpcio", "grpc", False)]
out = []
for dist, mod, pinned in carried:
    pin = pins.get(re.sub(r"[-_.]+", "-", dist).lower(), "")
    try:
        importlib.import_module(mod)
        if pinned and pin and version(dist) != pin: raise ImportError(f"{dist} {version(dist)} is not the pinned {pin}")
    except Exception:
        out.append(f"{dist}=={pin}" if pin else dist)
print(" ".join(out))
EOF
)
if [ -n "$need" ]; then
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "[gpu_suite.sh] installing from $WHEELS into $SITE: $need"
    pipi() { "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --no-compile --no-cache-dir --upgrade --disable-pip-version-check --root-user-action=ignore --target "$SITE" "$@"; }
    if ! pipi $need; then            # one that does not install (no wheel for this Python) must not stop the others
      for r in $need; do
        pipi "$r" || echo "[gpu_suite.sh] WARNING: $r did not install; the parts that need it will record the import error"
      done
    fi
    case ":${PYTHONPATH:-}:" in *":$SITE:"*) ;; *) export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}";; esac
  else
    echo "[gpu_suite.sh] WARNING: missing here: $need, and no wheels in $WHEELS (run benchmarks/gpu_wheels.sh where PyPI is" \
         "reachable and carry $WHEELS); the parts that need them will record the import error"
  fi
fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_suite.py "$@"
