#!/usr/bin/env bash
# compat_env.sh DIR CONSTRAINTS PACKAGE...: the virtual environment at DIR (built once, with PACKAGE..., and kept
# between runs), then this checkout's serving install (no extras) into it under CONSTRAINTS (a pip constraints file,
# or "" for none), so the pins stay as they are. Used by `make natix-compat`.
set -euo pipefail
dir=$1; constraints=$2; shift 2
if [ ! -f "$dir/.streetvision-env-ready" ]; then
    # a half-built environment of ours (interrupted) is started again; anything else at DIR is left alone
    if [ -e "$dir" ] && [ ! -f "$dir/pyvenv.cfg" ]; then
        echo "compat_env.sh: $dir exists and is not a virtual environment; set COMPAT_ROOT elsewhere." >&2
        exit 2
    fi
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install -q "$@"
    touch "$dir/.streetvision-env-ready"
fi
"$dir/bin/python" -m pip install -q --force-reinstall --no-deps . >/dev/null
"$dir/bin/python" -m pip install -q ${constraints:+-c "$constraints"} .
