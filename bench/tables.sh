#!/usr/bin/env bash
# Lookup tables: build time of a 1,000,000-line source with mailgate's
# `table build` and Postfix's `postmap hash:` (Berkeley DB; the unpacked
# package has no lmdb or cdb) in the same go, then criterion's build time
# and lookups per second from 20 threads with and without a rebuild being
# swapped in underneath (host/benches/tables.rs).
#   bench/tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin mailgate >/dev/null 2>&1
mg="$PWD/target/release/mailgate"
bin=$(bench/postfix-tools.sh)
pfx="$(cd "$bin/../.." && pwd)"
export LD_LIBRARY_PATH="$pfx/usr/lib/postfix"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p bench/results "$work/etc" "$work/mg"
touch "$work/etc/main.cf"
out="bench/results/tables-$(date +%Y%m%d-%H%M%S).txt"
python3 - "$work/src" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(1000000):
        f.write(f"user{i}@domain{i % 1000}.test v1 {i}\n")
PY
printf '[server]\nhostname = "h"\ndata_dir = "%s/mg"\nlocal_domains = ["x"]\n[[listener]]\naddress = "127.0.0.1:1"\nmode = "plain"\n' "$work" >"$work/m.toml"
{
    echo "# bench/tables.sh $(date -u +%FT%TZ) on $(nproc) cores: 1,000,000 lines"
    echo "# builder run seconds max_rss_KiB"
    for rep in 1 2 3; do
        /usr/bin/time -f "postmap-hash $rep %e %M" "$pfx/usr/sbin/postmap" -c "$work/etc" "hash:$work/src" 2>&1 | tail -1
        /usr/bin/time -f "mailgate $rep %e %M" "$mg" table build big "$work/src" --config "$work/m.toml" 2>&1 >/dev/null | tail -1
    done
} | tee "$out"
cargo bench -p mailgate --bench tables 2>&1 | grep -E "^tables/|time:|thrpt:" | sed 's/^/# /' | tee -a "$out"
echo "results: $out"
