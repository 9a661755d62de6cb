#!/usr/bin/env bash
# Build the Python example into a component: OUT (default
# plugins/target/python/reject_list_py.wasm). Needs componentize-py
# (pip install componentize-py==0.25.1); COMPONENTIZE_PY names the binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../../.."
out="${1:-$root/plugins/target/python/reject_list_py.wasm}"
mkdir -p "$(dirname "$out")"
cd "$here"
"${COMPONENTIZE_PY:-componentize-py}" -d "$root/wit/0.1" -w mailgate-plugin componentize app -o "$out"
