#!/usr/bin/env python3
"""Delivery latency in round trips, across a link with a fixed delay.

For each scenario two fresh network namespaces are joined by
bench/delay_relay.py (RTT_MS round trip, default 50 ms) on documentation
addresses: the sender at 192.0.2.1, the receiver at 192.0.2.2:2525. Nothing
in them routes anywhere else and no DNS is used (the sender's route is the
receiver's address). The sender delivers one message per connection,
DELIVERIES times in a row; the first finds empty caches (EHLO cache, TLS
sessions, TCP Fast Open cookies), the later ones whatever the earlier left.

A delivery's latency runs from the sender's SYN to the moment the
receiver's final reply (the 250 after the message) reaches the sender: the
relay stamps every packet when it arrives, before delaying it, so the SYN's
stamp is its send time, and the reply is the first server packet of that
connection sent at or after the receiver logged the message (both
receivers log with milliseconds before they answer) plus the one-way
delay. Round trips = latency / RTT.

Scenarios, for mailgate -> mailgate and Exim 4.96 -> Exim 4.96:
  clear          no TLS, no early pipelining
  clear+pipe     early pipelining (PIPECONNECT)
  clear+pipe+tfo ... and TCP Fast Open
  tls            STARTTLS, no early pipelining, no resumption
  tls+pipe+res   STARTTLS, early pipelining, TLS resumption
  tls+pipe+res+tfo ... and TCP Fast Open
and for mailgate -> mailgate with DANE (the sender finds the receiver by
MX in a DNSSEC-signed zone served by nsd in the receiver's namespace, so
every DNS query crosses the link, and verifies its certificate by a
`3 1 1` TLSA record; the DNS time before the SYN is shown apart):
  dane           STARTTLS with DANE, no early pipelining, no resumption
  dane+pipe+res  ... early pipelining, TLS resumption
  dane+pipe+res+tfo ... and TCP Fast Open

Run as root from the repository root after `cargo build --release`:
    python3 bench/latency.py [RTT_MS] [DELIVERIES]
    ONLY=tls,dane python3 bench/latency.py     (some scenarios only)
Writes bench/results/latency-YYYYmmdd-HHMMSS.txt.
"""

import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELAY = os.path.join(ROOT, "bench", "delay_relay.py")
MAILGATE = os.environ.get("MAILGATE_BIN") or os.path.join(ROOT, "target", "release", "mailgate")
A_ADDR, B_ADDR, PORT = "192.0.2.1", "192.0.2.2", 2525

SCENARIOS = [
    # name, tls, early pipelining, resumption, fast open, DANE
    ("clear", False, False, False, False, False),
    ("clear+pipe", False, True, False, False, False),
    ("clear+pipe+tfo", False, True, False, True, False),
    ("tls", True, False, False, False, False),
    ("tls+pipe+res", True, True, True, False, False),
    ("tls+pipe+res+tfo", True, True, True, True, False),
    ("dane", True, False, False, False, True),
    ("dane+pipe+res", True, True, True, False, True),
    ("dane+pipe+res+tfo", True, True, True, True, True),
]


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def in_ns(ns, *args):
    return ["ip", "netns", "exec", ns, *args]


class Link:
    """Two namespaces and the delay relay between them."""

    def __init__(self, rtt_ms, tag):
        self.rtt_ms = rtt_ms
        self.a = f"mglat-a-{os.getpid()}"
        self.b = f"mglat-b-{os.getpid()}"
        self.packets = os.path.join(tempfile.gettempdir(), f"mglat-{os.getpid()}-{tag}.tsv")
        for ns in (self.a, self.b):
            sh("ip", "netns", "add", ns)
        self.relay = subprocess.Popen(
            [sys.executable, RELAY, self.a, self.b, str(rtt_ms), self.packets],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.relay.stdout.readline().strip() == "ready", "relay did not start"
        for ns, me, peer in ((self.a, A_ADDR, B_ADDR), (self.b, B_ADDR, A_ADDR)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", me, "peer", peer, "dev", "dly0")
            sh("ip", "-n", ns, "link", "set", "dly0", "up")
            for key, value in (
                ("net.ipv4.tcp_fastopen", "3"),
                ("net.ipv4.tcp_fastopen_blackhole_timeout_sec", "0"),
            ):
                sh(*in_ns(ns, "sysctl", "-qw", f"{key}={value}"))

    def close(self):
        """Stop the relay (it writes the packet log) and remove the
        namespaces; returns the packet records."""
        self.relay.terminate()
        self.relay.wait(timeout=10)
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], check=False)
        rows = []
        with open(self.packets) as f:
            for line in f:
                t, d, sport, dport, flags, n = line.split("\t")
                rows.append((float(t), d, int(sport), int(dport), flags, int(n)))
        os.unlink(self.packets)
        return rows


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
CLIENT_PORT = re.compile(r"\[" + re.escape(A_ADDR) + r"\]:(\d+)")


def received(logfile):
    """(time, client port, line) for each `<=` line of a receiver's log."""
    out = []
    if not os.path.exists(logfile):
        return out
    with open(logfile) as f:
        for line in f:
            if " <= " not in line:
                continue
            m, p = LOG_TIME.match(line), CLIENT_PORT.search(line)
            if m and p:
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                out.append((t, int(p.group(1)), line.strip()))
    return out


def wait_for(what, cond, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def self_signed(d):
    sh(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        "-subj", "/CN=receiver.test", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.chmod(f"{d}/key.pem", 0o644)


def dane_zone(d):
    """Sign far.test (MX, address and TLSA for the receiver's certificate)
    and start nsd on the receiver's address; returns the trust anchor file
    and the nsd process."""
    spki = subprocess.run(
        f"openssl x509 -in {d}/cert.pem -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum",
        shell=True, check=True, capture_output=True, text=True,
    ).stdout.split()[0]
    zd = f"{d}/zone"
    os.makedirs(zd, exist_ok=True)
    with open(f"{zd}/zone", "w") as f:
        f.write(
            "$ORIGIN far.test.\n$TTL 3600\n"
            "@ IN SOA ns.far.test. admin.far.test. 1 3600 600 86400 3600\n"
            f"@ IN NS ns\nns IN A {B_ADDR}\n@ IN MX 10 mx\nmx IN A {B_ADDR}\n"
            f"_{PORT}._tcp.mx IN TLSA 3 1 1 {spki}\n"
        )
    key = subprocess.run(
        ["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", "far.test."],
        cwd=zd, check=True, capture_output=True, text=True,
    ).stdout.strip()
    sh("ldns-signzone", "-o", "far.test.", "zone", key, cwd=zd)
    shutil.copy(f"{zd}/{key}.key", f"{d}/anchors")
    with open(f"{zd}/nsd.conf", "w") as f:
        f.write(
            f"server:\n  ip-address: {B_ADDR}\n  port: 53\n  username: \"\"\n  chroot: \"\"\n"
            f"  zonesdir: \"{zd}\"\n  database: \"\"\n  zonelistfile: \"{zd}/zone.list\"\n"
            f"  xfrdfile: \"{zd}/xfrd.state\"\n  pidfile: \"{zd}/nsd.pid\"\n"
            f"  logfile: \"{zd}/nsd.log\"\n  do-ip6: no\nremote-control:\n  control-enable: no\n"
            "zone:\n  name: far.test\n  zonefile: zone.signed\n"
        )
    return f"{d}/anchors", zd


class Mailgate:
    """mailgate sending to mailgate."""

    name = "mailgate"

    def __init__(self, link, d, tls, early, resume, tfo, dane=False):
        self.link, self.d = link, d
        self.nsd = None
        if dane:
            anchors, zd = dane_zone(d)
            self.nsd = subprocess.Popen(
                in_ns(link.b, shutil.which("nsd") or "/usr/sbin/nsd", "-d", "-c", f"{zd}/nsd.conf"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            wait_for("nsd", lambda: "nsd started" in open(f"{zd}/nsd.log").read()
                     if os.path.exists(f"{zd}/nsd.log") else False)
            route = (
                f'nameservers = ["{B_ADDR}:53"]\ndnssec_trust_anchors = "{anchors}"\n'
                f'port = {PORT}\ntls = "dane"'
            )
        else:
            route = f'smarthost = "{B_ADDR}:{PORT}"\ntls = "{"may" if tls else "none"}"'
        srv = f"""[server]
hostname = "receiver.test"
data_dir = "{d}/recv"
local_domains = ["receiver.test"]
relay_networks = ["{A_ADDR}/32"]
[[listener]]
address = "{B_ADDR}:{PORT}"
mode = "{'starttls' if tls else 'plain'}"
[tls]
certificate = "{d}/cert.pem"
private_key = "{d}/key.pem"
[outbound]
queue_only = true
[auth]
enabled = false
[log]
millisec = true
"""
        cli = f"""[server]
hostname = "sender.test"
data_dir = "{d}/send"
local_domains = ["sender.test"]
[[listener]]
address = "127.0.0.1:{PORT}"
mode = "plain"
[outbound]
{route}
pipe_connect = {str(early).lower()}
fast_open = {str(tfo).lower()}
tls_resumption = {str(resume).lower()}
connection_idle = "0s"
retry_min = "2s"
[auth]
enabled = false
[log]
millisec = true
"""
        for name, text in (("recv.toml", srv), ("send.toml", cli)):
            with open(f"{d}/{name}", "w") as f:
                f.write(text)
        self.procs = []
        for ns, conf in ((link.b, "recv.toml"), (link.a, "send.toml")):
            self.procs.append(
                subprocess.Popen(
                    in_ns(ns, MAILGATE, "serve", "--config", f"{d}/{conf}"),
                    stdout=subprocess.DEVNULL,
                    stderr=open(f"{d}/{conf}.stderr", "w"),
                )
            )
        wait_for("mailgate listeners", lambda: self._listening())
        self.recv_log = f"{d}/recv/log/mainlog"
        self.send_log = f"{d}/send/log/mainlog"

    def _listening(self):
        r = subprocess.run(
            in_ns(self.link.a, "swaks", "--server", f"127.0.0.1:{PORT}", "--quit-after", "CONNECT"),
            capture_output=True,
        )
        return r.returncode == 0

    def send(self, n):
        sh(
            *in_ns(
                self.link.a, "swaks", "--server", f"127.0.0.1:{PORT}", "--from", "a@sender.test",
                "--to", "x@far.test", "--header", f"Subject: latency {n}", "--silent", "2",
            ),
            stdout=subprocess.DEVNULL,
        )
        wait_for("delivery", lambda: open(self.send_log).read().count(" => x@far.test") >= n)

    def stop(self):
        for p in self.procs + ([self.nsd] if self.nsd else []):
            p.terminate()
        for p in self.procs + ([self.nsd] if self.nsd else []):
            p.wait(timeout=30)


class Exim:
    """Exim 4.96 sending to Exim 4.96."""

    name = "exim"

    def __init__(self, link, d, tls, early, resume, tfo, dane=False):
        self.link, self.d = link, d
        for sub in ("recv/spool", "recv/log", "send/spool", "send/log"):
            os.makedirs(f"{d}/{sub}", exist_ok=True)
        for sub in ("", "recv", "recv/spool", "recv/log", "send", "send/spool", "send/log"):
            os.chmod(f"{d}/{sub}", 0o777)
        common = """host_lookup =
rfc1413_hosts =
keep_environment =
log_selector = +millisec +incoming_port +pipelining +tls_resumption +tls_cipher
"""
        srv = f"""primary_hostname = receiver.test
spool_directory = {d}/recv/spool
log_file_path = {d}/recv/log/%slog
{common}daemon_smtp_ports = {PORT}
local_interfaces = {B_ADDR}
tls_advertise_hosts = {'*' if tls else ''}
tls_certificate = {d}/cert.pem
tls_privatekey = {d}/key.pem
tls_resumption_hosts = *
pipelining_connect_advertise_hosts = *
queue_only = true
acl_smtp_rcpt = acl_rcpt
begin acl
acl_rcpt:
  accept
"""
        cli = f"""primary_hostname = sender.test
spool_directory = {d}/send/spool
log_file_path = {d}/send/log/%slog
{common}tls_advertise_hosts =
begin routers
out:
  driver = manualroute
  route_list = * {B_ADDR}
  transport = out
begin transports
out:
  driver = smtp
  port = {PORT}
  hosts_pipe_connect = {'*' if early else ''}
  tls_resumption_hosts = {'*' if resume else ''}
  hosts_try_fastopen = {'*' if tfo else ''}
  {'hosts_require_tls = *' if tls else 'hosts_avoid_tls = *'}
  hosts_try_dane =
  tls_verify_hosts =
  tls_try_verify_hosts =
begin retry
* * F,1m,1m
"""
        for name, text in (("recv.conf", srv), ("send.conf", cli)):
            with open(f"{d}/{name}", "w") as f:
                f.write(text)
        self.proc = subprocess.Popen(
            in_ns(link.b, shutil.which("exim4"), "-C", f"{d}/recv.conf", "-bdf"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.recv_log = f"{d}/recv/log/mainlog"
        wait_for("exim listener", lambda: os.path.exists(self.recv_log) or self._listening())
        time.sleep(0.5)

    def _listening(self):
        r = subprocess.run(in_ns(self.link.b, "ss", "-ltn"), capture_output=True, text=True)
        return f"{B_ADDR}:{PORT}" in r.stdout

    def send(self, n):
        msg = f"Subject: latency {n}\n\nlatency {n}\n"
        sh(
            *in_ns(
                self.link.a, shutil.which("exim4"), "-C", f"{self.d}/send.conf", "-odf", "-f",
                "a@sender.test", "x@far.test",
            ),
            input=msg.encode(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # "lost privilege for using -C"
        )
        wait_for("delivery", lambda: len(received(self.recv_log)) >= n)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def measure(rows, recv, rtt):
    """Round trips per delivery, with what the packets show."""
    one_way = rtt / 2
    out = []
    prev = 0.0
    for t_log, cport, line in recv:
        syn = [r for r in rows if r[1] == "a>b" and r[2] == cport and r[3] == PORT and r[4] == "S"]
        replies = [
            r for r in rows
            if r[1] == "b>a" and r[2] == PORT and r[3] == cport and r[5] > 0 and r[0] >= t_log
        ]
        if not syn or not replies:
            out.append((None, "packets not found", line))
            continue
        t0, syn_data = syn[0][0], syn[0][5]
        t_end = replies[0][0] + one_way
        notes = []
        # DNS queries sent since the previous delivery ended, before this SYN.
        dns = [r for r in rows if r[1] == "a>b" and r[3] == 53 and r[4] == "U" and prev < r[0] < t0]
        if dns:
            notes.append(f"{len(dns)} DNS queries, {(t0 - dns[0][0]) / rtt:.2f} RTT before the SYN")
        prev = t_end
        if syn_data:
            notes.append(f"{syn_data} bytes in the SYN")
        if " L*" in line:
            notes.append("L*")
        if re.search(r" X=\S+\*", line) or ":256* " in line:
            notes.append("resumed")
        out.append(((t_end - t0) / rtt, ", ".join(notes), line))
    return out


def main():
    if os.geteuid() != 0:
        sys.exit("run as root: it creates network namespaces")
    rtt_ms = float(sys.argv[1]) if len(sys.argv) > 1 else 50.0
    deliveries = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    if not os.path.exists(MAILGATE):
        sys.exit("build first: cargo build --release")
    for tool in ("exim4", "swaks", "openssl", "ip"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    result = os.path.join(ROOT, "bench", "results", f"latency-{stamp}.txt")
    commit = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    report = [
        f"# latency, {time.strftime('%Y-%m-%d %H:%M:%S')}, commit {commit}, RTT {rtt_ms:g} ms, "
        f"{deliveries} deliveries per scenario, one connection each",
        "# round trips from the sender's SYN to the final 250 reaching it; delivery 1 starts cold",
        "",
    ]
    summary = []
    for impl in (Mailgate, Exim):
        for name, tls, early, resume, tfo, dane in SCENARIOS:
            if dane and impl is not Mailgate:
                continue
            only = os.environ.get("ONLY")
            if only and name not in only.split(","):
                continue
            d = tempfile.mkdtemp(prefix="mglat-")
            os.chmod(d, 0o777)
            self_signed(d)
            link = Link(rtt_ms, f"{impl.name}-{name}")
            try:
                mta = impl(link, d, tls, early, resume, tfo, dane)
                try:
                    for n in range(1, deliveries + 1):
                        mta.send(n)
                        time.sleep(0.3)
                finally:
                    mta.stop()
            finally:
                rows = link.close()
            res = measure(rows, received(mta.recv_log), rtt_ms / 1000)
            report.append(f"## {impl.name} -> {impl.name}, {name}")
            for i, (rt, notes, line) in enumerate(res, 1):
                shown = "?" if rt is None else f"{rt:.2f}"
                report.append(f"  delivery {i}: {shown} RTT  {notes}")
            first = res[0][0] if res else None
            last = res[-1][0] if res else None
            summary.append((impl.name, name, first, last))
            print("\n".join(report[-(len(res) + 1):]), flush=True)
            shutil.rmtree(d, ignore_errors=True)
    report.append("")
    report.append("# summary: first and last (repeat) delivery, in round trips")
    report.append(f"{'sender -> receiver':<22}{'scenario':<20}{'first':>7}{'repeat':>8}")
    for impl, name, first, last in summary:
        f = "?" if first is None else f"{first:.2f}"
        r = "?" if last is None else f"{last:.2f}"
        report.append(f"{impl + ' -> ' + impl:<22}{name:<20}{f:>7}{r:>8}")
    with open(result, "w") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report[-(len(summary) + 2):]))
    print(f"written to {result}")


if __name__ == "__main__":
    main()
