#!/usr/bin/env bash
# Outbound delivery throughput to a discard server: Postfix's smtp-sink
# (with and without connection reuse) and mailgate's own sink example,
# which also offers PIPECONNECT (new connection per message, with and
# without early pipelining). The queue is filled while the sink is down,
# then `mailgate queue flush` is timed until the queue is empty.
# Writes bench/results/outbound-<date>.txt. Loopback only.
#   N=5000 SIZE=1024 bench/outbound.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
SIZE=${SIZE:-1024}
bin=$(bench/postfix-tools.sh)
export LD_LIBRARY_PATH="$bin/../lib/postfix"
cargo build --release --bin mailgate --example sink >/dev/null 2>&1
mg=target/release/mailgate
mkdir -p bench/results
out="bench/results/outbound-$(date +%Y%m%d-%H%M%S).txt"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # name idle per_conn sink-kind pipe_connect
    local name=$1 idle=$2 per=$3 kind=$4 pc=$5 dir port sink
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
pipe_connect = $pc
max_messages_per_connection = $per
max_connections = 20
max_connections_per_host = 20
[auth]
enabled = false
[log]
level = "warn"
CONF
    $mg serve --config "$dir/m.toml" 2>"$dir/err" &
    local pid=$!
    until [ -S "$dir/data/control.sock" ]; do sleep 0.1; done
    "$bin/smtp-source" -s 20 -m "$N" -l "$SIZE" -f a@local.test -t x@remote.test "127.0.0.1:$port"
    # Let every first attempt fail against the closed sink port.
    sleep 2
    if [ "$kind" = smtp-sink ]; then
        "$bin/smtp-sink" -u nobody -c "127.0.0.1:$sink" 1024 >/dev/null 2>&1 &
    else
        target/release/examples/sink "127.0.0.1:$sink" >/dev/null 2>&1 &
    fi
    local spid=$!
    sleep 0.5
    local t0 t1
    t0=$(date +%s.%N)
    $mg queue flush --config "$dir/m.toml" >/dev/null
    while [ -n "$($mg queue list --config "$dir/m.toml")" ]; do sleep 0.2; done
    t1=$(date +%s.%N)
    kill "$spid" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local early
    early=$(grep -c ' => .* L\* ' "$dir/data/log/mainlog" || true)
    python3 -c "n=$N; d=$t1-$t0; print(f'$name: {n} messages of $SIZE octets delivered in {d:.2f} s = {n/d:.0f} msg/s ($early with early pipelining)')" | tee -a "$out"
    rm -rf "$dir"
}
echo "mailgate outbound to discard servers, $(date -u), $(nproc) cores; loopback: early pipelining saves round trips, not CPU" | tee "$out"
run "smtp-sink, connection reuse (100 msgs/conn)         " 5s 100 smtp-sink false
run "smtp-sink, new connection per message              " 0s 1 smtp-sink false
run "own sink, new connection per message, no PIPECONNECT" 0s 1 own false
run "own sink, new connection per message, PIPECONNECT   " 0s 1 own true
