#!/usr/bin/env bash
# Build the contract 0.1 C fixture into a component: OUT (default
# plugins/target/c/reject_list_c_0_1.wasm), against wit/0.1 (world
# mailgate-plugin). See plugins/tools/c-build.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${1:-$root/plugins/target/c/reject_list_c_0_1.wasm}"
"$root/plugins/tools/c-build.sh" "$root/wit/0.1" mailgate-plugin "$here/plugin.c" "$out"
