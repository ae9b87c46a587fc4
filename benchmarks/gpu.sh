#!/usr/bin/env bash
# shellcheck disable=SC2317  # the step functions are called through run_step
# closedloop's GPU check: one command on a machine with an NVIDIA GPU and JAX's CUDA build
# (nothing is downloaded; about 8 minutes on one H200). Usage, from anywhere:
#
#     benchmarks/gpu.sh [OUTDIR]        # OUTDIR: default ./gpu-results
#
# Steps, in order, each under its own time limit, its output shown and kept in
# OUTDIR/logs/STEP.log (the script's own progress lines carry the time of day and the
# seconds since its start):
#   env        nvidia-smi, Python, JAX and its devices, `pip list`, the CPU cores the recorder's
#              eigenvalue threads get, and a float32 product on the GPU against float64 with the
#              project's matmul precision (no TF32: the golden numbers need full float32);
#   tests      the GPU-marked tests (pytest -m gpu tests): the golden tests on the GPU
#              (training.device=gpu) must run, not be skipped; if they fail they are run again
#              with NVIDIA_TF32_OVERRIDE=0 to tell whether TF32 is the cause;
#   golden     the golden tests on this machine's CPU
#              (pytest -m "not gpu" tests/training/test_golden.py);
#   ensemble   benchmarks/ours.py ensemble --device gpu: di-tanh-closed ensembles of MEMBERS,
#              EPOCHS epochs with all recording (eigenvalues on the host's cores, overlapped
#              with training): per network and epoch with recording, the compiled training
#              alone, network-epochs per second, compile time (each member count's row is kept
#              as soon as it is measured);
#   reproduce  closedloop reproduce --seeds SEEDS --only FIGURES --device gpu --workers 1, its
#              wall time and claims. Its folder (WORK/reproduction) is kept: a reproduce killed
#              by its time limit keeps its finished runs, and a second call (STEPS=reproduce)
#              continues it.
# Then OUTDIR/summary.md (printed at the end): the machine, the packages, each step's result
# and time, the tests, the ensemble table, reproduce's wall time, runs done, claims and figure
# sizes, and the targets (ensembles of 1024: >= 50x less time per network and epoch than one
# network on the 2-core CPU; reproduce under 15 minutes; the golden tests pass on the GPU).
# OUTDIR also gets results.json of reproduce; it holds at most 7 files. Exit status: 0 when
# every step passed (and, on a GPU, the golden tests ran there), else 1; 2: the env step failed
# on a GPU machine (JAX sees no GPU, or closedloop cannot start), nothing else was run.
#
# Settings (environment):
#   PYTHON=...                 the interpreter (default: the checkout's .venv, else python3);
#                              this checkout's src/ is put first on PYTHONPATH (no install
#                              needed). Missing pydantic/dask/distributed/control are installed
#                              from wheels in .whl/ into GPU_CHECK_SITE (default a folder under
#                              /tmp) when that folder is there; nothing is downloaded.
#   STEPS=tests,golden,ensemble,reproduce   which steps (env always runs)
#   MEMBERS=1,32,256,1024  EPOCHS=39  ENSEMBLE_SET="KEY=VALUE ..."   the ensemble benchmark
#                              (epochs 0..39: two whole compiled chunks of 20 epochs)
#   SEEDS=20  FIGURES=fig1,fig2,fig3,fig4,fig5  REPRODUCE_ARGS=  REPRODUCE_WORKERS=1
#   GPU_CHECK_FRESH=1          start reproduce from scratch (default: continue its folder)
#   time limits in seconds: GPU_CHECK_BUDGET=480 (the whole script; later steps get what is
#     left, GPU_CHECK_RESERVE=35 kept for the summary), ENV_TIMEOUT=90, TESTS_TIMEOUT=180,
#     GOLDEN_TIMEOUT=90, ENSEMBLE_TIMEOUT=240, REPRODUCE_TIMEOUT=330
#   CPU_EPOCH_MS=9.29          one di-tanh-closed network's epoch on the 2-core CPU the 50x
#                              target compares with (README, Performance)
#   GPU_CHECK_WORK=runs/gpu-check   working folder (compilation caches, reproduce's runs)
#   GPU_CHECK_ALLOW_CPU=1      for testing this script only: run every step on the CPU with
#                              tiny sizes (MEMBERS=1,2, small shapes, reproduce --quick with one
#                              seed); the numbers mean nothing.
set -uo pipefail
export PYTHONUNBUFFERED=1

OUTDIR="${1:-${GPU_CHECK_OUT:-gpu-results}}"
mkdir -p "$OUTDIR/logs" || { echo "error: cannot create $OUTDIR" >&2; exit 1; }
OUTDIR="$(cd "$OUTDIR" && pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

if [[ "${GPU_CHECK_ALLOW_CPU:-0}" == 1 ]]; then
    MODE=cpu
    DEVICE="${DEVICE:-cpu}"
    MEMBERS="${MEMBERS:-1,2}"
    EPOCHS="${EPOCHS:-8}"
    ENSEMBLE_SET="${ENSEMBLE_SET-agent.size=8 task.batch_size=16 task.steps=20 recording.segment_epochs=4}"
    SEEDS="${SEEDS:-1}"
    REPRODUCE_ARGS="${REPRODUCE_ARGS---quick}"
    REPRODUCE_TIMEOUT="${REPRODUCE_TIMEOUT:-180}"
else
    MODE=gpu
    DEVICE="${DEVICE:-gpu}"
    MEMBERS="${MEMBERS:-1,32,256,1024}"
    EPOCHS="${EPOCHS:-39}"
    ENSEMBLE_SET="${ENSEMBLE_SET-}"
    SEEDS="${SEEDS:-20}"
    REPRODUCE_ARGS="${REPRODUCE_ARGS-}"
    REPRODUCE_TIMEOUT="${REPRODUCE_TIMEOUT:-330}"
fi
FIGURES="${FIGURES:-fig1,fig2,fig3,fig4,fig5}"
REPRODUCE_WORKERS="${REPRODUCE_WORKERS:-1}"
STEPS="${STEPS:-tests,golden,ensemble,reproduce}"
BUDGET="${GPU_CHECK_BUDGET:-480}"
RESERVE="${GPU_CHECK_RESERVE:-35}"
ENV_TIMEOUT="${ENV_TIMEOUT:-90}"
TESTS_TIMEOUT="${TESTS_TIMEOUT:-180}"
GOLDEN_TIMEOUT="${GOLDEN_TIMEOUT:-90}"
ENSEMBLE_TIMEOUT="${ENSEMBLE_TIMEOUT:-240}"
CPU_EPOCH_MS="${CPU_EPOCH_MS:-9.29}"
WORK="${GPU_CHECK_WORK:-runs/gpu-check}"
mkdir -p "$WORK" && WORK="$(cd "$WORK" && pwd)"
REPRO="$WORK/reproduction"
STEPFILE="$WORK/steps.tsv"
ECACHE="$(mktemp -d "${TMPDIR:-/tmp}/closedloop-gpu-check.XXXXXX")"
trap 'rm -rf "$ECACHE"' EXIT
export MODE DEVICE MEMBERS EPOCHS ENSEMBLE_SET SEEDS FIGURES REPRODUCE_ARGS REPRODUCE_WORKERS
export REPRODUCE_TIMEOUT BUDGET CPU_EPOCH_MS OUTDIR WORK REPRO STEPFILE ROOT
rm -f "$STEPFILE" "$WORK"/*.xml "$WORK"/*.json "$WORK"/*.jsonl "$WORK"/*.note \
    "$OUTDIR"/logs/*.log "$OUTDIR/summary.md" "$OUTDIR/results.json"

say() { printf '[%s +%4ds] %s\n' "$(date +%H:%M:%S)" "$SECONDS" "$*"; }
left() { local n=$(( DEADLINE - SECONDS )); (( n < 1 )) && n=1; echo "$n"; }
wants() { [[ ",$STEPS," == *",$1,"* ]]; }

say "closedloop GPU check ($MODE mode), output in $OUTDIR, work folder $WORK"

# -- the interpreter, the wheels of what the machine lacks, and this checkout on the path ------
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]] && .venv/bin/python -c "" 2>/dev/null; then
        PYTHON=.venv/bin/python
    else
        PYTHON=python3
    fi
fi
export PYTHON
NEEDED="import pydantic, dask, distributed, control"
if ! "$PYTHON" -c "$NEEDED" 2>/dev/null && compgen -G ".whl/*.whl" > /dev/null; then
    SITE="${GPU_CHECK_SITE:-${TMPDIR:-/tmp}/closedloop-gpu-site}"
    say "installing the wheels of .whl/ into $SITE (no index, no dependencies)"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl && export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
say "python: $PYTHON; PYTHONPATH=$PYTHONPATH"

# -- the step runner: a limit from the budget, output teed to the log, the result recorded -----
run_step() {   # NAME WANTED_LIMIT FUNCTION
    local name=$1 want=$2 body=$3 log="$OUTDIR/logs/$1.log" limit rc status started
    limit=$(( BUDGET - RESERVE - SECONDS ))
    (( limit > want )) && limit=$want
    if (( limit < 10 )); then
        say "step $name: skipped, no time left in the budget"
        printf '%s\tSKIPPED\t0\t%s\t-\tno time left in the %s s budget\n' "$name" "$want" \
            "$BUDGET" >> "$STEPFILE"
        return 1
    fi
    DEADLINE=$(( SECONDS + limit ))
    started=$SECONDS
    say "step $name: start (limit ${limit} s)"
    { echo "# step $name, limit ${limit} s, started $(date -u +%FT%TZ)"; } > "$log"
    "$body" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) status=PASS ;;
        124|137) status=TIMEOUT ;;
        *) status=FAIL ;;
    esac
    say "step $name: $status (exit $rc, $(( SECONDS - started )) s)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$(( SECONDS - started ))" "$limit" \
        "$rc" "$(cat "$WORK/$name.note" 2>/dev/null)" >> "$STEPFILE"
    return "$rc"
}

# -- the steps ----------------------------------------------------------------------------------
env_step() {
    CLOSEDLOOP_JAX_CACHE=off timeout -k 10 "$(left)" "$PYTHON" - <<'PY'
"""What the machine is, and whether float32 products on the device are full float32."""
import json
import os
import platform
import subprocess
import sys
import time

from closedloop.runtime import available_cores, configure_cli, cpu_quota

configure_cli()          # the command line's process settings (XLA_FLAGS: one CPU thread)
import jax  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402

import closedloop  # noqa: E402
import closedloop.core  # noqa: E402  (the project's JAX settings: x64, matmul precision)
from closedloop.training.trainer import resolve_device  # noqa: E402

mode, device_name = os.environ["MODE"], os.environ["DEVICE"]
info = {"python": sys.version.split()[0], "executable": sys.executable,
        "platform": platform.platform(), "closedloop": closedloop.__version__,
        "closedloop_path": os.path.dirname(closedloop.__file__),
        "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "pythonpath": os.environ.get("PYTHONPATH")}


def run(command, timeout=60):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        return done.stdout if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


smi = run(["nvidia-smi"])
print(smi or "(nvidia-smi: not available)")
query = run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
             "--format=csv,noheader"])
info["nvidia_smi"] = [line.strip() for line in (query or "").splitlines() if line.strip()]
listed = run([sys.executable, "-m", "pip", "list", "--format=json"], timeout=120)
packages = json.loads(listed) if listed else []
print("pip list:")
for item in packages:
    print(f"  {item['name']:34} {item['version']}")
relevant = ("jax", "jaxlib", "optax", "equinox", "numpy", "scipy", "h5py", "torch", "pydantic",
            "pydantic-core", "dask", "distributed", "control", "pytest", "hypothesis",
            "threadpoolctl", "matplotlib", "pyarrow", "click", "rich", "pyyaml", "tornado",
            "typing-extensions", "ml-dtypes")
names = {p["name"]: p["name"].lower().replace("_", "-") for p in packages}
info["packages"] = [f"{p['name']} {p['version']}" for p in packages
                    if names[p["name"]] in relevant
                    or names[p["name"]].startswith(("jax-cuda", "nvidia-cublas", "nvidia-cudnn",
                                                    "nvidia-cuda-runtime", "nvidia-nccl"))]
missing = []
for module in ("pydantic", "dask", "distributed", "control", "torch", "optax", "h5py"):
    try:
        __import__(module)
    except Exception as exc:    # reported, not fatal here
        missing.append(f"{module} ({type(exc).__name__}: {exc})")
info["import_failures"] = missing

info["backend"] = jax.default_backend()
info["devices"] = [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()]
for name in ("gpu", "cuda"):
    try:
        info[f"devices_{name}"] = [str(d) for d in jax.devices(name)]
    except Exception as exc:    # RuntimeError: no such platform
        info[f"devices_{name}"] = []
        info[f"devices_{name}_error"] = str(exc).splitlines()[0][:300]
try:
    device = resolve_device(device_name)
    info["device"] = f"{device} ({device.device_kind})"
    info["device_platform"] = device.platform
except Exception as exc:        # reported
    device = None
    info["device_error"] = f"{type(exc).__name__}: {exc}"
info["gpu_ok"] = bool(info["devices_gpu"]) and device is not None and device.platform != "cpu"
info["x64"] = bool(jax.config.jax_enable_x64)
info["matmul_precision"] = str(jax.config.jax_default_matmul_precision)

if device is not None:   # float32 products against float64, on the training device
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    scale = float(np.abs(exact).max())
    left, right = jax.device_put(a, device), jax.device_put(b, device)

    def error():
        product = jax.jit(lambda x, y: x @ y)(left, right)
        return float(np.abs(np.asarray(product, dtype=np.float64) - exact).max()) / scale

    info["f32_matmul_rel_error"] = error()
    for precision in ("default", "tensorfloat32"):
        try:
            with jax.default_matmul_precision(precision):
                info[f"f32_matmul_rel_error_{precision}"] = error()
        except Exception as exc:    # reported
            info[f"f32_matmul_rel_error_{precision}"] = f"{type(exc).__name__}: {exc}"
    info["tf32_off"] = info["f32_matmul_rel_error"] < 1e-5

cores = available_cores()
info["cores"] = cores
info["cpu_count"] = os.cpu_count()
info["affinity"] = len(os.sched_getaffinity(0))
info["cpu_quota"] = cpu_quota()
accelerated = info.get("device_platform", "cpu") != "cpu"
info["spectra_threads"] = cores if accelerated else max(1, cores - 1)   # as the recorder
info["ram_gib"] = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
info["load_average"] = [round(x, 2) for x in os.getloadavg()]
try:
    with open("/proc/cpuinfo") as handle:
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in handle
                            if line.startswith("model name")), platform.processor())
except OSError:
    info["cpu"] = platform.processor()
info["time"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
with open(os.path.join(os.environ["WORK"], "env.json"), "w") as handle:
    json.dump(info, handle, indent=1)
print(json.dumps(info, indent=1))
if mode == "gpu" and not info["gpu_ok"]:
    print("error: JAX sees no GPU (JAX's CUDA build is needed)", file=sys.stderr)
    sys.exit(3)
if missing:
    print("warning: cannot import " + "; ".join(missing), file=sys.stderr)
PY
}

tests_step() {
    local rc
    timeout -k 15 "$(left)" "$PYTHON" -m pytest -q -rA -p no:cacheprovider --durations=8 \
        -m gpu tests --junitxml "$WORK/tests.xml"
    rc=$?
    if [[ $MODE == gpu && $rc != 0 && $rc != 124 && $rc != 137 ]] && (( $(left) > 30 )); then
        echo "== the golden tests on the GPU again, with NVIDIA_TF32_OVERRIDE=0 (TF32 off in cuBLAS)"
        NVIDIA_TF32_OVERRIDE=0 timeout -k 15 "$(left)" "$PYTHON" -m pytest -q -rA \
            -p no:cacheprovider -k on_gpu tests/training/test_golden.py \
            --junitxml "$WORK/tests-tf32-off.xml"
        echo "rerun with NVIDIA_TF32_OVERRIDE=0: exit $?" | tee "$WORK/tests.note"
    fi
    return "$rc"
}

golden_step() {
    timeout -k 15 "$(left)" "$PYTHON" -m pytest -q -rA -p no:cacheprovider --durations=8 \
        -m "not gpu" tests/training/test_golden.py --junitxml "$WORK/golden.xml"
}

ensemble_step() {
    local rc item sets=()
    for item in $ENSEMBLE_SET; do sets+=(--set "$item"); done
    # one process for every member count; each count's row is kept in ensemble.jsonl as soon
    # as it is measured, so a process stopped by the time limit keeps the rows it finished
    timeout -k 10 "$(left)" "$PYTHON" benchmarks/ours.py --cache "$ECACHE" ensemble \
        --device "$DEVICE" --members "$MEMBERS" --epochs "$EPOCHS" ${sets[@]+"${sets[@]}"} \
        --rows "$WORK/ensemble.jsonl"
    rc=$?
    if [[ $rc == 124 || $rc == 137 ]]; then
        touch "$WORK/ensemble.jsonl"
        echo "stopped by the time limit after $(wc -l < "$WORK/ensemble.jsonl") member" \
            "count(s)" | tee "$WORK/ensemble.note"
    fi
    return "$rc"
}

reproduce_step() {
    local rc before started=$SECONDS
    if [[ "${GPU_CHECK_FRESH:-0}" == 1 ]]; then rm -rf "$REPRO"; fi
    mkdir -p "$REPRO/runs"
    rm -f "$REPRO/results.json"
    find "$REPRO/runs" -maxdepth 1 -name '*.h5' | while read -r f; do
        [[ -e "$f.partial" ]] || basename "$f" .h5; done > "$WORK/reproduce-before.txt"
    before=$(wc -l < "$WORK/reproduce-before.txt")
    echo "runs already finished in $REPRO/runs before this call: $before"
    # one worker trains on the GPU; the main process may touch the GPU too (job building,
    # analysis), so neither takes 75 % of its memory up front
    # shellcheck disable=SC2086  # REPRODUCE_ARGS: words on purpose
    CLOSEDLOOP_JAX_CACHE="$WORK/jax-cache" \
        XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}" \
        timeout -k 20 "$(left)" "$PYTHON" -m closedloop.cli reproduce --seeds "$SEEDS" \
        --only "$FIGURES" --device "$DEVICE" --workers "$REPRODUCE_WORKERS" --out "$REPRO" \
        $REPRODUCE_ARGS
    rc=$?
    printf '%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$(( SECONDS - started ))" "$rc" \
        >> "$REPRO/gpu-check-calls.tsv"
    if [[ $rc == 124 || $rc == 137 ]]; then
        echo "killed by the time limit; finished runs are kept (STEPS=reproduce continues)" \
            | tee "$WORK/reproduce.note"
    fi
    [[ -f "$REPRO/results.json" ]] && cp "$REPRO/results.json" "$OUTDIR/results.json"
    return "$rc"
}

# -- run them -------------------------------------------------------------------------------
status=0
DEADLINE=$(( SECONDS + ENV_TIMEOUT ))
run_step env "$ENV_TIMEOUT" env_step
env_rc=$?
if grep -q "Unknown flag in XLA_FLAGS" "$OUTDIR/logs/env.log" 2>/dev/null; then
    # an empty XLA_FLAGS keeps the command line from setting its own (runtime.py)
    say "this XLA refuses the XLA_FLAGS in use: continuing with an empty XLA_FLAGS"
    export XLA_FLAGS=
    sed -i '$d' "$STEPFILE"
    echo "XLA refused the XLA_FLAGS in use; ran with an empty XLA_FLAGS" > "$WORK/env.note"
    run_step env "$ENV_TIMEOUT" env_step
    env_rc=$?
fi
(( env_rc != 0 )) && status=1
if [[ $MODE == gpu && $env_rc != 0 ]]; then
    say "the env step failed (no GPU for JAX, or closedloop cannot start: see logs/env.log);" \
        "the other steps are not run"
    status=2
else
    for step in tests golden ensemble reproduce; do
        wants "$step" || continue
        case $step in
            tests) run_step tests "$TESTS_TIMEOUT" tests_step ;;
            golden) run_step golden "$GOLDEN_TIMEOUT" golden_step ;;
            ensemble) run_step ensemble "$ENSEMBLE_TIMEOUT" ensemble_step ;;
            reproduce) run_step reproduce "$REPRODUCE_TIMEOUT" reproduce_step ;;
        esac || status=1
    done
fi

# -- the summary ----------------------------------------------------------------------------
say "writing $OUTDIR/summary.md"
export TOTAL_S=$SECONDS STATUS=$status
timeout -k 5 "$(( RESERVE > 20 ? RESERVE : 20 ))" "$PYTHON" - <<'PY'
"""OUTDIR/summary.md from the work folder's records (every part optional)."""
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

env = os.environ
out, work, repro = Path(env["OUTDIR"]), Path(env["WORK"]), Path(env["REPRO"])
mode, device = env["MODE"], env["DEVICE"]
lines = []
say = lines.append


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def tail(name, count=15):
    try:
        text = (out / "logs" / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return []
    return text[-count:]


steps = {}
if (work / "steps.tsv").exists():
    for row in (work / "steps.tsv").read_text().splitlines():
        name, status, seconds, limit, rc, note = (row.split("\t") + [""] * 6)[:6]
        steps[name] = {"status": status, "seconds": int(seconds or 0), "limit": limit,
                       "rc": rc, "note": note}
info = load(work / "env.json") or {}

say(f"# closedloop GPU check ({info.get('time', '')})")
say("")
if mode == "cpu":
    say("**CPU dry run (GPU_CHECK_ALLOW_CPU=1): tests the script only; the numbers mean "
        "nothing.**")
    say("")
say(f"Settings: device `{device}`, MEMBERS={env['MEMBERS']}, EPOCHS={env['EPOCHS']}"
    + (f", ENSEMBLE_SET=`{env['ENSEMBLE_SET']}`" if env.get("ENSEMBLE_SET") else "")
    + f", SEEDS={env['SEEDS']}, FIGURES={env['FIGURES']}"
    + (f", REPRODUCE_ARGS=`{env['REPRODUCE_ARGS']}`" if env.get("REPRODUCE_ARGS") else "")
    + f"; budget {env['BUDGET']} s, script total {env['TOTAL_S']} s.")
say("")

say("## Machine")
say("")
for gpu in info.get("nvidia_smi") or ["(nvidia-smi: no GPU listed)"]:
    say(f"* GPU (name, memory, driver): {gpu}")
say(f"* Python {info.get('python', '?')} ({info.get('executable', '?')}); closedloop "
    f"{info.get('closedloop', '?')} from `{info.get('closedloop_path', '?')}`")
say(f"* JAX {info.get('jax', '?')}, jaxlib {info.get('jaxlib', '?')}; default backend "
    f"`{info.get('backend', '?')}`; devices {info.get('devices', '?')}; "
    f"jax.devices('gpu'): {info.get('devices_gpu', '?')}; jax.devices('cuda'): "
    f"{info.get('devices_cuda', '?')}")
if info.get("device_error"):
    say(f"* training.device={device}: **{info['device_error']}**")
else:
    say(f"* training.device={device} resolves to {info.get('device', '?')}")
say(f"* XLA_FLAGS `{info.get('xla_flags', '')}`; x64 {info.get('x64')}; matmul precision "
    f"`{info.get('matmul_precision')}`")
if "f32_matmul_rel_error" in info:
    other = ", ".join(f"{key.rsplit('_', 1)[-1]}: {value:.1e}" if isinstance(value, float)
                      else f"{key.rsplit('_', 1)[-1]}: {value}"
                      for key, value in info.items()
                      if key.startswith("f32_matmul_rel_error_"))
    say(f"* float32 1024 x 1024 product on the training device against float64, relative "
        f"error {info['f32_matmul_rel_error']:.1e} with the project's setting (TF32 off: "
        f"**{'yes' if info.get('tf32_off') else 'NO'}**; other precisions: {other})")
say(f"* host: {info.get('cpu', '?')}; {info.get('cores', '?')} cores available "
    f"(os.cpu_count {info.get('cpu_count', '?')}, affinity {info.get('affinity', '?')}, "
    f"cgroup quota {info.get('cpu_quota') or 'none'}), eigenvalue threads while training on "
    f"{device}: {info.get('spectra_threads', '?')}; {info.get('ram_gib', '?')} GiB RAM; "
    f"load {info.get('load_average', '?')}")
if info.get("import_failures"):
    say(f"* cannot import: {'; '.join(info['import_failures'])}")
say("")
say("`pip list` (relevant lines; the whole list is in logs/env.log):")
say("")
say("```")
lines.extend(info.get("packages") or ["(not available)"])
say("```")
say("")

say("## Steps")
say("")
say("| step | result | time | limit | exit | note | log |")
say("|---|---|---|---|---|---|---|")
for name, step in steps.items():
    say(f"| {name} | {step['status']} | {step['seconds']} s | {step['limit']} s | {step['rc']} | "
        f"{step['note']} | logs/{name}.log |")
say("")


def junit(path):
    """[(test id, outcome, seconds, message)] of a pytest junit file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "FAILED", "error": "ERROR"}.get(child.tag, "skipped")
                message = (child.get("message") or "").splitlines()[0][:160] \
                    if child.get("message") else ""
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        cases.append((name, outcome, float(case.get("time") or 0), message))
    return cases


def test_table(title, cases):
    say(f"### {title}")
    say("")
    if cases is None:
        say("(no results: the step did not run or did not finish; see its log)")
        say("")
        return
    counts = {}
    for _, outcome, _, _ in cases:
        counts[outcome] = counts.get(outcome, 0) + 1
    say(", ".join(f"{n} {k}" for k, n in counts.items()) or "no tests")
    say("")
    say("| test | outcome | time | message |")
    say("|---|---|---|---|")
    for name, outcome, seconds, message in cases:
        say(f"| {name} | {outcome} | {seconds:.1f} s | {message} |")
    say("")


say("## Tests")
say("")
gpu_cases = junit(work / "tests.xml")
test_table("GPU-marked tests (`pytest -m gpu tests`)", gpu_cases)
rerun = junit(work / "tests-tf32-off.xml")
if rerun is not None:
    test_table("golden tests on the GPU again with NVIDIA_TF32_OVERRIDE=0", rerun)
test_table("golden tests on this machine's CPU", junit(work / "golden.xml"))
golden_gpu = [c for c in gpu_cases or [] if "on_gpu" in c[0]]
golden_passed = sum(c[1] == "passed" for c in golden_gpu)
golden_ok = bool(golden_gpu) and golden_passed == len(golden_gpu)

say("## Ensemble benchmark")
say("")
sys.path.insert(0, env["ROOT"])
try:
    from benchmarks.ours import ensemble_table
except Exception:                # the table below suffices
    ensemble_table = None
results, rows = [], []
try:
    results = [json.loads(line) for line in
               (work / "ensemble.jsonl").read_text().splitlines() if line.strip()]
except (OSError, ValueError):
    pass
measured = {r["row"]["members"]: r["row"] for r in results}
for count in [int(v) for v in env["MEMBERS"].split(",") if v.strip()]:
    rows.append(measured.get(count, {"members": count, "missing": True}))
reference_ms = float(env["CPU_EPOCH_MS"])
if results:
    first = results[0]
    say(f"`{first['preset']}`, {first['epochs']} epochs, device {first['device']} "
        f"({first['device_kind']}), JAX backend {first['jax_backend']}"
        + "".join(f", {o}" for o in first["overrides"])
        + "; one process, an empty compilation cache.")
    say("")
say("| members | per network-epoch, with recording | network-epochs/s | compiled training "
    f"alone, per network-epoch | compile | timed run | vs {reference_ms:g} ms (1 network, "
    "2-core CPU) |")
say("|---|---|---|---|---|---|---|")
for row in rows:
    if row.get("missing"):
        say(f"| {row['members']} | not measured (failed or time limit; see logs/ensemble.log)"
            " | | | | | |")
        continue
    per = row["epoch_per_network_s"] * 1e3
    compiled = row["compiled_epoch_per_network_s"]
    say(f"| {row['members']} | {per:.4f} ms | {row['network_epochs_per_s']:.1f} | "
        + ("-" if compiled is None else f"{compiled * 1e3:.4f} ms")
        + f" | {row['compile_s']:.1f} s | {row['run_s']:.2f} s | {reference_ms / per:.1f}x |")
say("")
if results and ensemble_table is not None:
    merged = dict(results[0], rows=[r for r in rows if not r.get("missing")])
    say("```")
    say(ensemble_table(merged))
    say("```")
    say("")

say("## reproduce")
say("")
step = steps.get("reproduce")
figures = [f.strip() for f in env["FIGURES"].split(",") if f.strip()]
quick = "--quick" in env.get("REPRODUCE_ARGS", "").split()
finished = total = None
done_cost = total_cost = before_cost = 0.0
try:
    before = set((work / "reproduce-before.txt").read_text().split())
except OSError:
    before = set()
try:
    from closedloop.paper import figure_module
    from closedloop.paper.base import Settings
    from closedloop.runs.store import is_finished

    settings = Settings(quick=quick, seeds=tuple(range(int(env["SEEDS"]))))
    jobs = {}
    for seed in settings.seeds:
        for figure in figures:
            for job in figure_module(figure).jobs(settings, seed):
                jobs.setdefault(job.name, job)
    total = len(jobs)
    finished = sum(is_finished(repro / "runs" / f"{name}.h5") for name in jobs)
    total_cost = sum(job.cost for job in jobs.values())
    done_cost = sum(job.cost for name, job in jobs.items()
                    if is_finished(repro / "runs" / f"{name}.h5"))
    before_cost = sum(job.cost for name, job in jobs.items() if name in before)
except Exception as exc:         # reported
    say(f"(cannot count the runs: {type(exc).__name__}: {exc})")
reproduced = load(out / "results.json") if (out / "results.json").exists() else None
command = (f"closedloop reproduce --seeds {env['SEEDS']} --only {env['FIGURES']} --device "
           f"{device} --workers {env['REPRODUCE_WORKERS']} {env.get('REPRODUCE_ARGS', '')}")
say(f"`{command.strip()}`")
say("")
reproduce_ok = calls_s = None
try:
    calls = [int(line.split("\t")[1]) for line in
             (repro / "gpu-check-calls.tsv").read_text().splitlines() if line.strip()]
except (OSError, ValueError, IndexError):
    calls = []
if step is None:
    say("not run")
else:
    wall = step["seconds"]
    calls_s = sum(calls) if calls else wall
    state = {"PASS": "finished", "TIMEOUT": "killed by its time limit", "FAIL": "failed",
             "SKIPPED": "skipped"}.get(step["status"], step["status"])
    say(f"* {state}: wall time {wall} s ({wall / 60:.1f} min) of a {step['limit']} s limit, "
        f"exit {step['rc']}")
    if len(calls) > 1:
        say(f"* a continued reproduce: {len(calls)} calls on this folder, {calls_s} s "
            f"({calls_s / 60:.1f} min) in all (each call starts anew: a little more than one "
            "uninterrupted run)")
    if total:
        fraction = done_cost / total_cost if total_cost else 0.0
        say(f"* runs finished: {finished}/{total} (cost-weighted {fraction:.0%})"
            + (f"; {len(before)} were finished before this call" if before else ""))
        if step["status"] != "PASS" and fraction > 0:
            say(f"* a rough extrapolation (cost-weighted, training only, no analysis): about "
                f"{calls_s / fraction / 60:.0f} min for all {total} runs")
    if reproduced:
        timing = reproduced.get("timing", {})
        say(f"* reproduce's own timing (this call): training {timing.get('training_s', 0):.0f}"
            f" s, analysis {timing.get('analysis_s', 0):.0f} s, total "
            f"{timing.get('total_s', 0):.0f} s; failures: {len(reproduced.get('failures') or {})}")
    if step["status"] == "PASS" and reproduced:
        reproduce_ok = calls_s < 900
say("")
if reproduced:
    say("| claim | figure | verdict | support |")
    say("|---|---|---|---|")
    for claim in reproduced.get("claims", []):
        votes = claim.get("per_seed", [])
        say(f"| {claim['id']} | {claim['figure']} | {claim['verdict']} | "
            f"{sum(votes)}/{len(votes)} |")
    say("")
    for figure in reproduced.get("figures", []):
        if figure.get("error"):
            say(f"* {figure['figure']}: **{figure['error']}**")
    for name, reason in list((reproduced.get("failures") or {}).items())[:10]:
        say(f"* run {name} failed: {reason}")
    say("")


def png_size(path):
    with open(path, "rb") as handle:
        head = handle.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return "?"
    return f"{int.from_bytes(head[16:20], 'big')} x {int.from_bytes(head[20:24], 'big')} px"


images = sorted(repro.glob("fig*.png")) if reproduced else []
if images:
    say("Figures (in the work folder, not copied): " + "; ".join(
        f"{p.name} {png_size(p)}, {p.stat().st_size / 1024:.0f} KiB" for p in images)
        + "; " + "; ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KiB"
                           for p in sorted(repro.glob("fig*.svg")))
        + (f"; index.html {(repro / 'index.html').stat().st_size / 1024:.0f} KiB"
           if (repro / "index.html").exists() else ""))
    say("")

say("## Targets")
say("")
say("| target | measured | met |")
say("|---|---|---|")
largest = max((r for r in rows if not r.get("missing")), key=lambda r: r["members"],
              default=None)
target = ("ensembles of 1024 di-tanh-closed networks with recording: >= 50x less time per "
          f"network and epoch than one network on the 2-core CPU ({reference_ms:g} ms)")
if largest is not None:
    per = largest["epoch_per_network_s"] * 1e3
    met = largest["members"] >= 1024 and reference_ms / per >= 50
    say(f"| {target} | {largest['members']} members: {per:.4f} ms, "
        f"{reference_ms / per:.1f}x | {'yes' if met else 'NO'} |")
else:
    say(f"| {target} | {'not measured' if 'ensemble' in steps else 'not run'} | - |")
if step is not None:
    verdict = {True: "yes", False: "NO", None: "not known"}[reproduce_ok]
    say(f"| reproduce --seeds {env['SEEDS']} --only {env['FIGURES']} under 15 min | "
        f"{(calls_s or 0) / 60:.1f} min, {state}"
        + (f", {finished}/{total} runs" if total else "") + f" | {verdict} |")
else:
    say(f"| reproduce --seeds {env['SEEDS']} under 15 min | not run | - |")
if "tests" in steps:
    say(f"| the golden tests pass on the GPU | {golden_passed}/{len(golden_gpu)} passed | "
        f"{'yes' if golden_ok else 'NO'} |")
else:
    say("| the golden tests pass on the GPU | not run | - |")
if "tf32_off" in info:
    say(f"| TF32 off for float32 products (project setting) | relative error "
        f"{info['f32_matmul_rel_error']:.1e} | {'yes' if info['tf32_off'] else 'NO'} |")
say("")

failed = [name for name, s in steps.items() if s["status"] != "PASS"]
for name in failed:
    say(f"### {name}: the log's last lines")
    say("")
    say("```")
    lines.extend(tail(name))
    say("```")
    say("")

(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
bad = bool(failed) or int(env.get("STATUS", "0")) != 0 or (
    mode == "gpu" and "tests" in steps and not golden_ok)
sys.exit(1 if bad else 0)
PY
summary_rc=$?
if [[ ! -s "$OUTDIR/summary.md" ]]; then
    say "the summary script failed (exit $summary_rc): a plain one instead"
    {
        echo "# closedloop GPU check (summary script failed, exit $summary_rc)"
        echo
        echo "| step | result | time | limit | exit | note |"
        echo "|---|---|---|---|---|---|"
        while IFS=$'\t' read -r n s t l r note; do
            echo "| $n | $s | $t s | $l s | $r | $note |"
        done < "$STEPFILE"
    } > "$OUTDIR/summary.md"
    cat "$OUTDIR/summary.md"
fi
say "done in $SECONDS s: $OUTDIR/summary.md"
if (( status == 2 )); then exit 2; fi
if (( status != 0 || summary_rc != 0 )); then exit 1; fi
exit 0
