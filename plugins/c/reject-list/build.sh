#!/usr/bin/env bash
# Build the C example into a component: OUT (default
# plugins/target/c/reject_list_c.wasm). Needs Debian's clang, lld and
# wasi-libc (apt-get install clang lld wasi-libc); the bindings and the
# component wrapping come from plugins/tools/c-component (built here with
# cargo), so neither wit-bindgen-cli nor wasm-tools is needed. The
# bindings are made for the example's world (world.wit), with the
# contract (wit/0.2) as its dependency.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${1:-$root/plugins/target/c/reject_list_c.wasm}"
work="$root/plugins/target/c/work"
rm -rf "$work/wit" "$work/gen"
mkdir -p "$work/wit/deps/mailgate-plugin" "$(dirname "$out")"
cp "$here/world.wit" "$work/wit/"
cp "$root/wit/0.2/mailgate-plugin.wit" "$work/wit/deps/mailgate-plugin/"
tool="$root/plugins/target/tools/release/c-component"
cargo build --release --locked --quiet --manifest-path "$root/plugins/tools/c-component/Cargo.toml" \
    --target-dir "$root/plugins/target/tools"
"$tool" bindings "$work/wit" reject-list "$work/gen"
clang --target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -L/usr/lib/wasm32-wasi \
    -O2 -Wall -Wextra -Werror -mexec-model=reactor -I "$work/gen" \
    -o "$work/reject_list_c.core.wasm" \
    "$here/plugin.c" "$work/gen/reject_list.c" "$work/gen/reject_list_component_type.o"
"$tool" new "$work/reject_list_c.core.wasm" "$out"
