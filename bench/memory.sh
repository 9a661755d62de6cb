#!/usr/bin/env bash
# Resident memory per idle connection: mailgate and Exim (a process per
# connection) with 1,000 and 5,000 clients that connect, read the banner
# and say nothing. Memory is the proportional set size (PSS) summed over
# the server's processes, before and with the connections open.
#   COUNTS="1000 5000" bench/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${COUNTS:-"1000 5000"}
SERVERS=${SERVERS:-"mailgate exim"}
ulimit -n "$(ulimit -Hn)"
# MAILGATE_BIN measures another build (e.g. the commit before a change).
if [ -n "${MAILGATE_BIN:-}" ]; then
    mg="$MAILGATE_BIN"
else
    cargo build --release --bin mailgate >/dev/null 2>&1
    mg="$PWD/target/release/mailgate"
fi
work=$(mktemp -d)
chmod 755 "$work"
mkdir -p bench/results
out="bench/results/memory-$(date +%Y%m%d-%H%M%S).txt"
cg=/sys/fs/cgroup/cpuacct
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pss() { # total PSS in KiB of the processes in cgroup $1
    local t=0 v
    for p in $(cat "$cg/$1/cgroup.procs"); do
        v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
echo "# bench/memory.sh $(date -u +%FT%TZ) on $(nproc) cores: idle connections (banner read, then silence)" | tee "$out"
echo "# server connections pss_before_KiB pss_with_KiB KiB_per_connection processes" | tee -a "$out"
for name in $SERVERS; do
    for n in $COUNTS; do
        dir="$work/$name-$n"
        mkdir -p "$dir" "$cg/mgmem-$name"
        chmod 777 "$dir"
        port=$(free_port)
        enter="echo \$\$ > $cg/mgmem-$name/cgroup.procs; exec \"\$@\""
        if [ "$name" = mailgate ]; then
            cat > "$dir/m.toml" <<CONF
[server]
hostname = "mg.bench.test"
data_dir = "$dir/data"
local_domains = ["local.test"]
[[listener]]
address = "127.0.0.1:$port"
mode = "plain"
[limits]
max_connections = 20000
max_connections_per_ip = 20000
[outbound]
queue_only = true
nameservers = ["127.0.0.1:9"]
[auth]
enabled = false
[log]
level = "warn"
CONF
            sh -c "$enter" sh "$mg" serve --config "$dir/m.toml" 2>"$dir/err" &
        else
            mkdir -p "$dir/spool" "$dir/log"
            chmod 777 "$dir/spool" "$dir/log"
            cat > "$dir/exim.conf" <<CONF
primary_hostname = exim.bench.test
spool_directory = $dir/spool
log_file_path = $dir/log/%slog
host_lookup =
rfc1413_hosts =
daemon_smtp_ports = $port
local_interfaces = 127.0.0.1
queue_only = true
smtp_accept_max = 20000
smtp_accept_max_per_host = 20000
smtp_accept_reserve = 0
smtp_connect_backlog = 1024
keep_environment =
begin acl
begin routers
begin transports
CONF
            sh -c "$enter" sh /usr/sbin/exim4 -C "$dir/exim.conf" -bdf 2>"$dir/err" &
        fi
        for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
        sleep 1
        before=$(pss "mgmem-$name")
        # Hold n connections open; print when all banners are read.
        python3 - "$port" "$n" > "$dir/fifo.out" <<'PY' &
import asyncio, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
async def one(conns):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await r.readline()
    conns.append(w)
async def main():
    conns = []
    for i in range(0, n, 200):
        await asyncio.gather(*(one(conns) for _ in range(min(200, n - i))))
    print(len(conns), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
PY
        holder=$!
        until [ -s "$dir/fifo.out" ]; do
            kill -0 "$holder" 2>/dev/null || { echo "$name: clients failed: $(cat "$dir/err")" >&2; exit 1; }
            sleep 0.2
        done
        sleep 2
        with=$(pss "mgmem-$name")
        procs=$(wc -l < "$cg/mgmem-$name/cgroup.procs")
        python3 -c "import sys; b,w,n=map(int,sys.argv[1:4]); print(f'$name {n} {b} {w} {(w-b)/n:.1f} $procs')" "$before" "$with" "$(cat "$dir/fifo.out")" | tee -a "$out"
        kill "$holder" 2>/dev/null || true
        for p in $(cat "$cg/mgmem-$name/cgroup.procs"); do kill "$p" 2>/dev/null || true; done
        sleep 1
        for p in $(cat "$cg/mgmem-$name/cgroup.procs"); do kill -9 "$p" 2>/dev/null || true; done
        sleep 0.5
        rmdir "$cg/mgmem-$name" 2>/dev/null || true
    done
done
rm -rf "$work"
echo "results: $out"
