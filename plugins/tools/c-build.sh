#!/usr/bin/env bash
# c-build.sh WIT_DIR WORLD SOURCE.c OUT.wasm: a C plugin as a component.
# The bindings for WORLD (in WIT_DIR) and the component wrapping come from
# plugins/tools/c-component (built here with cargo), so neither
# wit-bindgen-cli nor wasm-tools is needed; the compiler is Debian's clang
# with lld and wasi-libc (apt-get install clang lld wasi-libc), building a
# wasm32-wasi reactor.
set -euo pipefail
wit="$1" world="$2" src="$3" out="$4"
root="$(cd "$(dirname "$0")/../.." && pwd)"
name="$(basename "$out" .wasm)"
work="$root/plugins/target/c/work/$name"
gen="${world//-/_}"
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
tool="$root/plugins/target/tools/release/c-component"
cargo build --release --locked --quiet --manifest-path "$root/plugins/tools/c-component/Cargo.toml" \
    --target-dir "$root/plugins/target/tools"
"$tool" bindings "$wit" "$world" "$work/gen"
clang --target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -L/usr/lib/wasm32-wasi \
    -O2 -Wall -Wextra -Werror -mexec-model=reactor -I "$work/gen" \
    -o "$work/$name.core.wasm" \
    "$src" "$work/gen/$gen.c" "$work/gen/${gen}_component_type.o"
"$tool" new "$work/$name.core.wasm" "$out"
