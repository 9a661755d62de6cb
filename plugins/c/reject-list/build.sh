#!/usr/bin/env bash
# Build the C example into a component: OUT (default
# plugins/target/c/reject_list_c.wasm), for the example's world
# (world.wit) with the contract (wit/0.2) as its dependency. Needs
# Debian's clang, lld and wasi-libc; see plugins/tools/c-build.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${1:-$root/plugins/target/c/reject_list_c.wasm}"
wit="$root/plugins/target/c/wit"
rm -rf "$wit"
mkdir -p "$wit/deps/mailgate-plugin"
cp "$here/world.wit" "$wit/"
cp "$root/wit/0.2/mailgate-plugin.wit" "$wit/deps/mailgate-plugin/"
"$root/plugins/tools/c-build.sh" "$wit" reject-list "$here/plugin.c" "$out"
