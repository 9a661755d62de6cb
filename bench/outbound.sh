#!/usr/bin/env bash
# Outbound delivery throughput: mailgate -> Postfix's smtp-sink (a discard
# server), with and without connection reuse. The queue is filled while the
# sink is down, then `mailgate queue flush` is timed until the queue is
# empty. Writes bench/results/outbound-<date>.txt. Loopback only.
#   N=5000 SIZE=1024 bench/outbound.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
SIZE=${SIZE:-1024}
bin=$(bench/postfix-tools.sh)
export LD_LIBRARY_PATH="$bin/../lib/postfix"
cargo build --release --bin mailgate >/dev/null 2>&1
mg=target/release/mailgate
mkdir -p bench/results
out="bench/results/outbound-$(date +%Y%m%d-%H%M%S).txt"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # name idle per_conn
    local name=$1 idle=$2 per=$3 dir port sink
    dir=$(mktemp -d) port=$(free_port) sink=$(free_port)
    cat > "$dir/m.toml" <<CONF
[server]
hostname = "bench.test"
data_dir = "$dir/data"
local_domains = ["local.test"]
[[listener]]
address = "127.0.0.1:$port"
mode = "plain"
[outbound]
smarthost = "127.0.0.1:$sink"
nameservers = ["127.0.0.1:9"]
retry_min = "1h"
connect_timeout = "2s"
connection_idle = "$idle"
max_messages_per_connection = $per
max_connections = 20
max_connections_per_host = 20
[log]
level = "warn"
CONF
    $mg serve --config "$dir/m.toml" 2>"$dir/err" &
    local pid=$!
    until [ -S "$dir/data/control.sock" ]; do sleep 0.1; done
    "$bin/smtp-source" -s 20 -m "$N" -l "$SIZE" -f a@local.test -t x@remote.test "127.0.0.1:$port"
    # Let every first attempt fail against the closed sink port.
    sleep 2
    "$bin/smtp-sink" -u nobody -c "127.0.0.1:$sink" 1024 >/dev/null 2>&1 &
    local spid=$!
    sleep 0.5
    local t0 t1
    t0=$(date +%s.%N)
    $mg queue flush --config "$dir/m.toml" >/dev/null
    while [ -n "$($mg queue list --config "$dir/m.toml")" ]; do sleep 0.2; done
    t1=$(date +%s.%N)
    kill "$spid" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 -c "n=$N; d=$t1-$t0; print(f'$name: {n} messages of $SIZE octets delivered in {d:.2f} s = {n/d:.0f} msg/s')" | tee -a "$out"
    rm -rf "$dir"
}
echo "mailgate outbound to smtp-sink, $(date -u), $(nproc) cores" | tee "$out"
run "connection reuse (100 msgs/conn)" 5s 100
run "new connection per message    " 0s 1
