#!/usr/bin/env bash
# Build the C example into a component: OUT (default
# plugins/target/c/reject_list_c.wasm). Needs Debian's clang, lld and
# wasi-libc (apt-get install clang lld wasi-libc); the bindings and the
# component wrapping come from plugins/tools/c-component (built here with
# cargo), so neither wit-bindgen-cli nor wasm-tools is needed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${1:-$root/plugins/target/c/reject_list_c.wasm}"
work="$root/plugins/target/c/work"
mkdir -p "$work" "$(dirname "$out")"
tool="$root/plugins/target/tools/release/c-component"
cargo build --release --locked --quiet --manifest-path "$root/plugins/tools/c-component/Cargo.toml" \
    --target-dir "$root/plugins/target/tools"
"$tool" bindings "$root/wit/0.1" mailgate-plugin "$work/gen"
clang --target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -L/usr/lib/wasm32-wasi \
    -O2 -Wall -Wextra -Werror -mexec-model=reactor -I "$work/gen" \
    -o "$work/reject_list_c.core.wasm" \
    "$here/plugin.c" "$work/gen/mailgate_plugin.c" "$work/gen/mailgate_plugin_component_type.o"
"$tool" new "$work/reject_list_c.core.wasm" "$out"
