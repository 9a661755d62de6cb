#!/usr/bin/env bash
# Inbound throughput, mailgate against Exim 4.96 and Postfix 3.7 in the same
# run, all queue-only with their default durability (each fsyncs a message
# before its 250), plus smtp-sink (no disk) as the upper reference and the
# disk's fsync rate. Driven by Postfix's smtp-source at 1 and 20 parallel
# sessions, 1 KiB and 20 KiB messages, REPS repetitions each; reports the
# median messages per second and CPU milliseconds per message (the server's
# whole process tree, from a cpuacct cgroup), and mailgate's ratios.
# Sessions are persistent (smtp-source -d): Exim holds its 221 to QUIT for
# up to 200 ms, which would otherwise dominate a new-connection figure.
#
#   REPS=3 N20=10000 N1=2000 PLUGINS=0 bench/throughput.sh
#   MAILGATE_BIN=/tmp/other bench/throughput.sh   (another build)
#   MAILGATE_BEFORE=/tmp/old SERVERS="mailgate mailgate-before exim postfix" bench/throughput.sh
#
# CASE=tls: a new connection and a full TLS 1.3 handshake (STARTTLS, no
# resumption) per message, every server with the same RSA-2048 certificate,
# driven by host/examples/tls_source.rs (smtp-source has no TLS); smtp-sink
# is left out. Defaults then: SIZES=1024 SESSIONS=20 N20=5000. The server
# mailgate-ecdsa is mailgate with an ECDSA P-256 certificate beside the RSA
# one ([[tls.alternative]]): what a client that accepts ECDSA costs it.
#
# CASE=auth: every message carries one DKIM signature and one ARC set
# (dkimpy signs and seals; keys from `mailgate dkim keygen`; nsd serves
# the keys, SPF and DMARC on loopback), sent as the same file by
# smtp-source -F. Servers: mailgate (checks off, as the peers), then
# mailgate-checks (the host's iprev, SPF and DKIM), mailgate-arc (and the
# ARC plugin validating), mailgate-all (and the DMARC and SRS plugins),
# and Postfix with nothing on; the differences in CPU per message are what
# each layer costs. Defaults then: SIZES=1024 SESSIONS=20.
#
# PLUGINS=1 runs mailgate with the bundled plugins (the SRS plugin and the
# Rust reject-list example; build them first: scripts/test.sh does), with
# no reuse key: both declare themselves reusable, so they run as an admin's
# config would run them. The server mailgate-plugins is mailgate with those
# two plugins, and mailgate-plugins-fresh the same with reuse = false (a
# new instance and init per transaction), so that
#   SERVERS="mailgate mailgate-plugins mailgate-plugins-fresh" SIZES=1024 SESSIONS=20 bench/throughput.sh
# shows what the plugins cost per message in one run.
#
# The pool's shared state: mailgate-pool-local runs the greylisting plugin
# (the run's triple passed during the warm-up, so each RCPT is one kv read)
# and two rate limits (messages and recipients per client address), all in
# the node's own state; mailgate-pool-redis the same in a redis-server on a
# unix socket, started in the server's cgroup so that Redis's CPU counts
# as the node's. Their difference is what sharing costs per message:
#   SERVERS="mailgate mailgate-pool-local mailgate-pool-redis" SIZES=1024 SESSIONS=20 bench/throughput.sh
# Loopback only. Needs root (Exim's private daemon, Postfix's users, the
# cgroup). Old spools are moved aside during the run and deleted at the
# end: deleting many files on this ext4 slows the next file creations.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
CASE=${CASE:-plain}
if [ "$CASE" = tls ]; then
    N20=${N20:-5000}
    SIZES=${SIZES:-1024}
    SESSIONS=${SESSIONS:-20}
    SERVERS=${SERVERS:-"mailgate exim postfix"}
fi
if [ "$CASE" = auth ]; then
    SIZES=${SIZES:-1024}
    SESSIONS=${SESSIONS:-20}
    SERVERS=${SERVERS:-"mailgate mailgate-checks mailgate-arc mailgate-all postfix"}
    for p in arc dmarc srs; do
        [ -f "plugins/target/wasm32-wasip2/release/$p.wasm" ] ||
            { echo "build the plugins first (scripts/test.sh does)" >&2; exit 1; }
    done
fi
N20=${N20:-10000}
N1=${N1:-2000}
PLUGINS=${PLUGINS:-0}
SIZES=${SIZES:-"1024 20480"}
SESSIONS=${SESSIONS:-"20 1"}
SERVERS=${SERVERS:-"mailgate exim postfix sink"}

bin=$(bench/postfix-tools.sh)
pfx="$(cd "$bin/../.." && pwd)"
export LD_LIBRARY_PATH="$pfx/usr/lib/postfix"
# MAILGATE_BIN runs another build (e.g. the commit before a change) in the
# same harness.
if [ -n "${MAILGATE_BIN:-}" ]; then
    mg="$MAILGATE_BIN"
else
    cargo build --release --bin mailgate >/dev/null 2>&1
    mg="$PWD/target/release/mailgate"
fi
if [ "$CASE" = tls ]; then
    cargo build --release --example tls_source >/dev/null 2>&1
    tls_source="$PWD/target/release/examples/tls_source"
fi
[ -x /usr/sbin/exim4 ] || { echo "exim4-daemon-heavy is not installed" >&2; exit 1; }
getent group postdrop >/dev/null || groupadd -r postdrop
id postfix >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin postfix

work="$PWD/bench/.work/$(date +%s)"
mkdir -p "$work" bench/results
chmod 755 "$PWD/bench/.work" "$work"
out="bench/results/throughput-$CASE-$(date +%Y%m%d-%H%M%S).txt"
if [ "$CASE" = tls ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=bench.test \
        -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
    chmod 644 "$work/key.pem"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=bench.test -keyout "$work/ec-key.pem" -out "$work/ec-cert.pem" >/dev/null 2>&1
fi
nsd_pid=
if [ "$CASE" = auth ]; then
    # Keys, records, nsd on loopback, and the signed and sealed message.
    "$mg" dkim keygen bench.test s1 --out "$work/s1.pem" >"$work/s1.txt"
    "$mg" dkim keygen fwd.bench.test arc --out "$work/arc.pem" >"$work/arc.txt"
    nsd_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$work/nsd"
    {
        echo '$ORIGIN bench.test.'
        echo '$TTL 3600'
        echo '@ IN SOA ns.bench.test. admin.bench.test. 1 3600 600 86400 3600'
        echo '@ IN NS ns'
        echo 'ns IN A 127.0.0.1'
        echo '@ IN TXT "v=spf1 ip4:127.0.0.0/8 -all"'
        echo 'helo IN A 127.0.0.1'
        echo 'helo IN TXT "v=spf1 a -all"'
        echo '_dmarc IN TXT "v=DMARC1; p=reject"'
        grep '_domainkey' "$work/s1.txt"
        grep '_domainkey' "$work/arc.txt"
    } >"$work/nsd/bench.zone"
    cat >"$work/nsd/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1@$nsd_port
  port: $nsd_port
  username: ""
  chroot: ""
  zonesdir: "$work/nsd"
  database: ""
  zonelistfile: "$work/nsd/zone.list"
  xfrdfile: "$work/nsd/xfrd.state"
  pidfile: "$work/nsd/nsd.pid"
  logfile: "$work/nsd/nsd.log"
  do-ip6: no
remote-control:
  control-enable: no
zone:
  name: bench.test
  zonefile: bench.zone
CONF
    /usr/sbin/nsd -c "$work/nsd/nsd.conf" -d >/dev/null 2>&1 &
    nsd_pid=$!
    for _ in $(seq 100); do grep -q "nsd started" "$work/nsd/nsd.log" 2>/dev/null && break; sleep 0.05; done
    /usr/bin/python3 - "$work" >"$work/msg.info" <<'PY'
import sys, dkim
w = sys.argv[1]
body = b"".join(b"Line %02d of a message of about one kibibyte, signed and sealed.\r\n" % i for i in range(12))
msg = (b"From: Alice <a@bench.test>\r\nTo: x@remote.test\r\nSubject: bench\r\n"
       b"Date: Tue, 1 Dec 2026 12:00:00 +0000\r\nMessage-ID: <bench@bench.test>\r\n\r\n" + body)
sig = dkim.sign(msg, b"s1", b"bench.test", open(w + "/s1.pem", "rb").read(),
                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
msg = sig + msg
ar = b"Authentication-Results: fwd.bench.test; spf=pass smtp.mailfrom=a@bench.test; dkim=pass header.d=bench.test\r\n"
arc = dkim.arc_sign(ar + msg, b"arc", b"fwd.bench.test", open(w + "/arc.pem", "rb").read(),
                    b"fwd.bench.test", include_headers=[b"from", b"to", b"subject"])
assert arc, "no ARC set"
out = b"".join(arc) + ar + msg
open(w + "/msg.eml", "wb").write(out.replace(b"\r\n", b"\n"))
print("# message: %d octets, one DKIM signature, one ARC set" % len(out))
PY
fi
cg=/sys/fs/cgroup/cpuacct
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# The binary for a mailgate server name: NAME-before (mailgate-before,
# mailgate-all-before, ...) in SERVERS runs
# MAILGATE_BEFORE, e.g. the build of the commit before a change, in the
# same go, interleaved with this one.
mg_of() { case $1 in *-before) echo "$MAILGATE_BEFORE" ;; *) echo "$mg" ;; esac; }

# start_server NAME DIR PORT: starts it inside cgroup mgbench-NAME.
start_server() {
    local name=$1 dir=$2 port=$3
    # NAME-before: the same server on MAILGATE_BEFORE.
    local kind=${name%-before}
    mkdir -p "$cg/mgbench-$name"
    local enter="echo \$\$ > $cg/mgbench-$name/cgroup.procs; exec \"\$@\""
    case $name in
    mailgate|mailgate-*)
        local plug="" auth="enabled = false" ns='"127.0.0.1:9"'
        if [ "$CASE" = auth ] && [ "$kind" != mailgate ]; then
            auth="enabled = true"
            ns="\"127.0.0.1:$nsd_port\""
        fi
        local rel="$PWD/plugins/target/wasm32-wasip2/release"
        if [ "$kind" = mailgate-arc ] || [ "$kind" = mailgate-all ]; then
            plug="
[[plugin]]
name = \"arc\"
path = \"$rel/arc.wasm\"
capabilities = [\"log\", \"dns\", \"crypto\"]"
        fi
        if [ "$kind" = mailgate-all ]; then
            plug="$plug
[[plugin]]
name = \"dmarc\"
path = \"$rel/dmarc.wasm\"
capabilities = [\"log\", \"dns\", \"random\"]

[[plugin]]
name = \"srs\"
path = \"$rel/srs.wasm\"
capabilities = [\"clock\"]
[plugin.config]
domain = \"local.test\"
secrets = [\"bench\"]"
        fi
        if [ "$kind" = mailgate-pool-local ] || [ "$kind" = mailgate-pool-redis ]; then
            plug="
[[rate_limit]]
count = \"messages\"
limit = 100000000
window = \"1h\"

[[rate_limit]]
count = \"recipients\"
limit = 100000000
window = \"1h\"

[[plugin]]
name = \"greylist\"
path = \"$rel/greylist.wasm\"
capabilities = [\"kv\", \"clock\", \"log\"]
[plugin.config]
delay = 1
retry_window = 3600"
        fi
        if [ "$kind" = mailgate-pool-redis ]; then
            sh -c "$enter" sh redis-server --port 0 --unixsocket "$dir/redis.sock" \
                --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
            for _ in $(seq 100); do [ -S "$dir/redis.sock" ] && break; sleep 0.05; done
            plug="$plug

[store]
redis = \"unix://$dir/redis.sock\""
        fi
        if [ "$kind" = mailgate-ecdsa ]; then
            plug="
[[tls.alternative]]
certificate = \"$work/ec-cert.pem\"
private_key = \"$work/ec-key.pem\""
        fi
        if [ "$PLUGINS" = 1 ] || [ "$kind" = mailgate-plugins ] || [ "$kind" = mailgate-plugins-fresh ]; then
            local reuse=""
            [ "$kind" = mailgate-plugins-fresh ] && reuse="
reuse = false"
            plug="
[[plugin]]
name = \"srs\"
path = \"$PWD/plugins/target/wasm32-wasip2/release/srs.wasm\"
capabilities = [\"clock\"]$reuse
[plugin.config]
domain = \"local.test\"
secrets = [\"bench\"]

[[plugin]]
name = \"reject-list\"
path = \"$PWD/plugins/target/wasm32-wasip2/release/reject_list.wasm\"
capabilities = [\"log\", \"lookup\"]$reuse
[plugin.config]
reject = [\"nobody@remote.test\"]"
        fi
        cat > "$dir/m.toml" <<CONF
[server]
hostname = "mg.bench.test"
data_dir = "$dir/data"
plugin_cache = "$work/plugin-cache"
local_domains = ["local.test"]
[[listener]]
address = "127.0.0.1:$port"
mode = "$([ "$CASE" = tls ] && echo starttls || echo plain)"
$([ "$CASE" = tls ] && printf '[tls]\ncertificate = "%s"\nprivate_key = "%s"\n' "$work/cert.pem" "$work/key.pem")
[limits]
max_messages_per_connection = 1000000
[outbound]
queue_only = true
nameservers = [$ns]
[auth]
# Measured like the peers: no SPF/DKIM checks (see README), except in
# CASE=auth's mailgate-* variants.
$auth
[log]
level = "warn"
$plug
CONF
        sh -c "$enter" sh "$(mg_of "$name")" serve --config "$dir/m.toml" 2>"$dir/err" &
        ;;
    exim)
        mkdir -p "$dir/spool" "$dir/log"
        chmod 777 "$dir" "$dir/spool" "$dir/log"
        cat > "$dir/exim.conf" <<CONF
primary_hostname = exim.bench.test
spool_directory = $dir/spool
log_file_path = $dir/log/%slog
host_lookup =
rfc1413_hosts =
daemon_smtp_ports = $port
local_interfaces = 127.0.0.1
queue_only = true
smtp_accept_max = 200
smtp_accept_max_per_connection = 1000000
$(if [ "$CASE" = tls ]; then printf 'tls_advertise_hosts = *\ntls_certificate = %s\ntls_privatekey = %s\n' "$work/cert.pem" "$work/key.pem"; fi)
keep_environment =
acl_smtp_rcpt = acl_rcpt
begin acl
acl_rcpt:
  accept hosts = 127.0.0.0/8
  deny
begin routers
begin transports
CONF
        sh -c "$enter" sh /usr/sbin/exim4 -C "$dir/exim.conf" -bdf 2>"$dir/err" &
        ;;
    postfix)
        mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
        chown postfix "$dir/data"
        cp "$pfx/usr/share/postfix/master.cf.dist" "$dir/etc/master.cf"
        sed -i "s/^smtp      inet  n       -       y       -       -       smtpd/127.0.0.1:$port inet n - n - - smtpd/" "$dir/etc/master.cf"
        cat > "$dir/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
command_directory = $pfx/usr/sbin
daemon_directory = $pfx/usr/lib/postfix/sbin
shlib_directory = $pfx/usr/lib/postfix
meta_directory = $pfx/etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject
# Queue only: every message goes to the hold queue, never to delivery.
smtpd_sender_restrictions = check_sender_access static:HOLD
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH=$pfx/usr/lib/postfix
maillog_file = $dir/maillog
maillog_file_prefixes = $work
smtputf8_enable = no
default_process_limit = 100
CONF
        if [ "$CASE" = tls ]; then
            sed -i "s/^tlsmgr    unix  -       -       y/tlsmgr    unix  -       -       n/" "$dir/etc/master.cf"
            cat >> "$dir/etc/main.cf" <<CONF
smtpd_tls_security_level = may
smtpd_tls_cert_file = $work/cert.pem
smtpd_tls_key_file = $work/key.pem
CONF
        fi
        sh -c "$enter" sh "$pfx/usr/sbin/postfix" -c "$dir/etc" start >/dev/null 2>"$dir/err"
        ;;
    sink)
        sh -c "$enter" sh "$bin/smtp-sink" -u nobody -c "127.0.0.1:$port" 1024 >/dev/null 2>&1 &
        ;;
    esac
    wait_port "$port" || { echo "$name did not start: $(cat "$dir/err" 2>/dev/null)" >&2; exit 1; }
    sleep 0.3
}

stop_server() {
    local name=$1 dir=$2
    if [ "$name" = postfix ]; then
        "$pfx/usr/sbin/postfix" -c "$dir/etc" stop >/dev/null 2>&1 || true
    fi
    for p in $(cat "$cg/mgbench-$name/cgroup.procs"); do kill "$p" 2>/dev/null || true; done
    for _ in $(seq 100); do [ -z "$(cat "$cg/mgbench-$name/cgroup.procs")" ] && break; sleep 0.05; done
    for p in $(cat "$cg/mgbench-$name/cgroup.procs"); do kill -9 "$p" 2>/dev/null || true; done
    sleep 0.2
}

count_queued() {
    local name=$1 dir=$2
    case $name in
    mailgate|mailgate-*) "$(mg_of "$name")" queue list --config "$dir/m.toml" 2>/dev/null |
        awk '$3 ~ /^[0-9A-Za-z]+-[0-9A-Za-z]+-[0-9A-Za-z]+$/' | wc -l ;;
    exim) find "$dir/spool/input" -name '*-H' | wc -l ;;
    postfix) find "$dir/spool/hold" -type f | wc -l ;;
    sink) echo - ;;
    esac
}

{
    echo "# bench/throughput.sh $(date -u +%FT%TZ) on $(nproc) cores; CASE=$CASE REPS=$REPS N20=$N20 N1=$N1 PLUGINS=$PLUGINS"
    echo "# exim: $(/usr/sbin/exim4 --version | head -1)"
    echo "# postfix: $("$pfx/usr/sbin/postconf" -d mail_version 2>/dev/null)"
    [ "$CASE" = auth ] && cat "$work/msg.info"
    echo "# server sessions size rep messages seconds msg/s cpu_ms/msg queued"
} | tee "$out"

run=0
for size in $SIZES; do
    for s in $SESSIONS; do
        n=$N20; [ "$s" = 1 ] && n=$N1
        for rep in $(seq "$REPS"); do
            for name in $SERVERS; do
                run=$((run + 1))
                dir="$work/$name-$run"
                mkdir -p "$dir"
                port=$(free_port)
                start_server "$name" "$dir" "$port"
                # A warm-up message, not counted.
                if [ "$CASE" = tls ]; then
                    "$tls_source" "127.0.0.1:$port" 1 1 "$size" >/dev/null
                elif [ "$CASE" = auth ]; then
                    "$bin/smtp-source" -s 1 -m 1 -F "$work/msg.eml" -M helo.bench.test -f a@bench.test -t warm@remote.test "127.0.0.1:$port"
                else
                    # (Greylisted on the pool servers.)
                    "$bin/smtp-source" -s 1 -m 1 -l "$size" -f a@bench.test -t warm@remote.test "127.0.0.1:$port" ||
                        case $name in mailgate-pool-*) ;; *) exit 1 ;; esac
                fi
                case $name in
                mailgate-pool-*)
                    # The run's triple: greylisted once, passed after the
                    # delay; later messages find it passed.
                    "$bin/smtp-source" -s 1 -m 1 -l "$size" -f a@bench.test -t x@remote.test "127.0.0.1:$port" || true
                    sleep 1.3
                    "$bin/smtp-source" -s 1 -m 1 -l "$size" -f a@bench.test -t x@remote.test "127.0.0.1:$port"
                    ;;
                esac
                u0=$(cat "$cg/mgbench-$name/cpuacct.usage")
                t0=$(date +%s.%N)
                if [ "$CASE" = tls ]; then
                    # A new connection and handshake per message.
                    "$tls_source" "127.0.0.1:$port" "$s" "$n" "$size" >"$dir/source.out"
                elif [ "$CASE" = auth ]; then
                    "$bin/smtp-source" -d -s "$s" -m "$n" -F "$work/msg.eml" -M helo.bench.test -f a@bench.test -t x@remote.test "127.0.0.1:$port"
                else
                    # -d: persistent sessions (one connection per session).
                    "$bin/smtp-source" -d -s "$s" -m "$n" -l "$size" -f a@bench.test -t x@remote.test "127.0.0.1:$port"
                fi
                t1=$(date +%s.%N)
                u1=$(cat "$cg/mgbench-$name/cpuacct.usage")
                q=$(count_queued "$name" "$dir")
                stop_server "$name" "$dir"
                python3 - "$name" "$s" "$size" "$rep" "$n" "$t0" "$t1" "$u0" "$u1" "$q" <<'PY' | tee -a "$out"
import sys
name, s, size, rep, n, t0, t1, u0, u1, q = sys.argv[1:]
el = float(t1) - float(t0)
cpu_ms = (int(u1) - int(u0)) / 1e6 / int(n)
print(f"{name} {s} {size} {rep} {n} {el:.2f} {int(n) / el:.0f} {cpu_ms:.3f} {q}")
PY
            done
        done
    done
done

python3 - "$out" <<'PY' | tee -a "$out"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
med = {}
for name, s, size, rep, n, el, rate, cpu, q in rows:
    med.setdefault((name, s, size), []).append((float(rate), float(cpu)))
print("# medians: server sessions size msg/s cpu_ms/msg")
for k, v in sorted(med.items()):
    print(f"# {k[0]} {k[1]} {k[2]} {statistics.median(r for r, _ in v):.0f} {statistics.median(c for _, c in v):.3f}")
print("# ratios mailgate/other (msg/s; CPU per message other/mailgate)")
for (name, s, size), v in sorted(med.items()):
    if name in ("mailgate", "sink"):
        continue
    m = med.get(("mailgate", s, size))
    if not m:
        continue
    mr, mc = statistics.median(r for r, _ in m), statistics.median(c for _, c in m)
    r, c = statistics.median(x for x, _ in v), statistics.median(y for _, y in v)
    print(f"# vs {name}, {s} sessions, {size} B: {mr / r:.2f}x messages/s, {c / mc if mc else 0:.2f}x less CPU")
# The plugins' cost: mailgate-plugins runs two (SRS and reject-list).
for s_, size in sorted({(s, z) for (_, s, z) in med}):
    a = med.get(("mailgate", s_, size))
    for name, what in [("mailgate-plugins", "reused instances"), ("mailgate-plugins-fresh", "fresh instances")]:
        b = med.get((name, s_, size))
        if a and b:
            d = statistics.median(y for _, y in b) - statistics.median(y for _, y in a)
            print(f"# {s_} sessions, {size} B: two plugins, {what}: +{d * 1000:.0f} us CPU per message, {d * 500:.0f} us per plugin")
# The pool: what the node's own state and the shared Redis cost.
for s_, size in sorted({(s, z) for (_, s, z) in med}):
    a = med.get(("mailgate", s_, size))
    for name in ("mailgate-pool-local", "mailgate-pool-redis"):
        b = med.get((name, s_, size))
        if a and b:
            d = statistics.median(y for _, y in b) - statistics.median(y for _, y in a)
            r = statistics.median(x for x, _ in b) / statistics.median(x for x, _ in a)
            print(f"# {s_} sessions, {size} B: {name}: +{d * 1000:.0f} us CPU per message, {r:.2f}x the messages/s of plain mailgate")
# CASE=auth: what each layer adds, and the fully checked gateway against
# Postfix with nothing on.
layers = [("mailgate", "no checks"), ("mailgate-checks", "host iprev+SPF+DKIM"),
          ("mailgate-arc", "ARC plugin"), ("mailgate-all", "DMARC+SRS plugins")]
for s_, size in sorted({(s, z) for (_, s, z) in med}):
    prev = None
    for name, what in layers:
        v = med.get((name, s_, size))
        if not v:
            # A layer's cost is against the layer below it only.
            prev = None
            continue
        c = statistics.median(y for _, y in v)
        if prev is not None:
            print(f"# {s_} sessions, {size} B: {what}: +{(c - prev) * 1000:.0f} us CPU per message")
        prev = c
    a, p = med.get(("mailgate-all", s_, size)), med.get(("postfix", s_, size))
    if a and p:
        ar, pr = statistics.median(r for r, _ in a), statistics.median(r for r, _ in p)
        print(f"# {s_} sessions, {size} B: mailgate with every check vs Postfix with none: {ar / pr:.2f}x messages/s")
# NAME-before: the change's effect on each server, in the same go.
for (name, s_, size), v in sorted(med.items()):
    b = med.get((name + "-before", s_, size))
    if b:
        c, cb = statistics.median(y for _, y in v), statistics.median(y for _, y in b)
        r, rb = statistics.median(x for x, _ in v), statistics.median(x for x, _ in b)
        print(f"# {name} {s_} sessions, {size} B: {(c - cb) * 1000:+.0f} us CPU per message against MAILGATE_BEFORE, {r / rb:.2f}x messages/s")
PY
# The disk's own ceiling, measured last: its many deletions would slow
# the file creations of the runs above.
mkdir -p "$work/fsync"
python3 bench/fsync-rate.py "$work/fsync" 3 | sed 's/^/# /' | tee -a "$out"
for name in $SERVERS; do rmdir "$cg/mgbench-$name" 2>/dev/null || true; done
[ -n "$nsd_pid" ] && kill "$nsd_pid" 2>/dev/null || true
echo "results: $out; removing the spools in $work"
rm -rf "$work"
