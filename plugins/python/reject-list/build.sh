#!/usr/bin/env bash
# Build the Python example into a component: OUT (default
# plugins/target/python/reject_list_py.wasm). Needs componentize-py
# (pip install componentize-py==0.25.1); COMPONENTIZE_PY names the binary.
# The example's world (world.wit) is built with the contract (wit/0.2) as
# its dependency.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${1:-$root/plugins/target/python/reject_list_py.wasm}"
wit="$root/plugins/target/python/wit"
rm -rf "$wit"
mkdir -p "$wit/deps/mailgate-plugin" "$(dirname "$out")"
cp "$here/world.wit" "$wit/"
cp "$root/wit/0.2/mailgate-plugin.wit" "$wit/deps/mailgate-plugin/"
cd "$here"
"${COMPONENTIZE_PY:-componentize-py}" -d "$wit" -w reject-list componentize app -o "$out"
