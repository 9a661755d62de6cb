#!/usr/bin/env bash
# Run one fuzz target for SECONDS on stable Rust: the same instrumentation
# cargo-fuzz asks rustc for (SanitizerCoverage for libFuzzer), without a
# sanitizer. Corpora live in fuzz/corpus/TARGET, crashes in fuzz/artifacts.
#   fuzz/run.sh smtp_session 60     (no target: every target for SECONDS)
set -euo pipefail
cd "$(dirname "$0")"
secs=${2:-30}
targets=${1:-"smtp_command smtp_session data_reader reply_parser spool_record smtp_client tls_inputs auth_inputs"}
[ "$targets" = all ] && targets="smtp_command smtp_session data_reader reply_parser spool_record smtp_client tls_inputs auth_inputs"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$PWD/target"
# An explicit --target keeps the instrumentation off build scripts and
# proc macros, as cargo-fuzz does.
triple=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --locked --bins --target "$triple"
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t, ${secs}s"
    "target/$triple/release/$t" "corpus/$t" -max_total_time="$secs" -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 |
        grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|panicked|Test unit written" || true
    if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "$t: crash found, see fuzz/artifacts/$t" >&2
        exit 1
    fi
done
