#!/usr/bin/env python3
"""Load and abuse: does the gateway keep serving while it is being held?

Starts mailgate (target/release, a private data dir, 127.0.0.1) with a
60 s command timeout and then, at the same time:
  * 5,000 idle connections, spread over 100 loopback source addresses
    (50 each, under the per-IP limit), each saying NOOP every 45 s;
  * 20 slowloris clients dribbling "EHLO slowloris" a byte every 10 s;
  * one client that pipelines EHLO commands and never reads a reply;
  * a well-behaved client that sends a message every 0.5 s over a new
    connection, timing each;
and probes the limits: 110 connections from one address (per-IP limit
100), and at the end, with the idle ones still open, as many as the total
limit allows plus 50.

It reports what each kind of client saw (replies, when it was cut off),
mailgate's memory (RSS and PSS) with everything open, and the
well-behaved client's successes and latency. Timings are reported, never
asserted. Run from the repository root after `cargo build --release`:
    python3 bench/load.py [DURATION_S]
Writes bench/results/load-YYYYmmdd-HHMMSS.txt.
"""

import asyncio
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAILGATE = os.path.join(ROOT, "target", "release", "mailgate")
IDLE = 5000
SOURCES = 100
SLOW = 20
COMMAND_TIMEOUT = 60
MAX_CONNECTIONS = 5200


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def memory(pid):
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


async def open_conn(port, source=None):
    kw = {"local_addr": (source, 0)} if source else {}
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16, **kw)
    banner = await asyncio.wait_for(r.readline(), 30)
    return r, w, banner.decode(errors="replace").strip()


async def reply(r, timeout=30):
    """A whole (multi-line) reply."""
    lines = []
    while True:
        line = (await asyncio.wait_for(r.readline(), timeout)).decode(errors="replace")
        if not line:
            raise ConnectionError("closed")
        lines.append(line.strip())
        if len(line) < 4 or line[3] != "-":
            return lines


class Idle:
    def __init__(self):
        self.open = 0
        self.refused = []
        self.errors = []
        self.closed_early = 0

    async def one(self, port, source, stop):
        try:
            r, w, banner = await open_conn(port, source)
        except Exception as e:  # noqa: BLE001 - reported
            self.errors.append(repr(e))
            return
        if not banner.startswith("220"):
            self.refused.append(banner)
            w.close()
            return
        self.open += 1
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 45)
                except asyncio.TimeoutError:
                    w.write(b"NOOP\r\n")
                    await w.drain()
                    await reply(r)
        except Exception:  # noqa: BLE001 - counted
            self.closed_early += 1
        finally:
            w.close()


async def slowloris(port, t0, out):
    r, w, _ = await open_conn(port)
    sent = 0
    try:
        for b in b"EHLO slowloris\r\n":
            w.write(bytes([b]))
            await w.drain()
            sent += 1
            try:
                line = await asyncio.wait_for(r.readline(), 10)
            except asyncio.TimeoutError:
                continue
            out.append((time.time() - t0, sent, line.decode(errors="replace").strip()))
            return
        out.append((time.time() - t0, sent, "whole command sent, not cut"))
    except Exception as e:  # noqa: BLE001 - reported
        out.append((time.time() - t0, sent, f"closed: {e!r}"))
    finally:
        w.close()


def non_reader(port, t0, out):
    """Blocking socket: pipelines EHLOs and never reads."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    chunk = b"EHLO nonreader\r\n" * 64
    sent = 0
    stalled_at = None
    while True:
        try:
            sent += s.send(chunk)
        except socket.timeout:
            if stalled_at is None:
                stalled_at = time.time() - t0
            continue
        except OSError as e:
            out.append((time.time() - t0, sent, stalled_at, repr(e)))
            break
        if time.time() - t0 > 4 * COMMAND_TIMEOUT:
            out.append((time.time() - t0, sent, stalled_at, "never cut"))
            break
    s.close()


async def healthy(port, stop, out):
    n = 0
    while not stop.is_set():
        n += 1
        t = time.time()
        try:
            r, w, banner = await open_conn(port)
            assert banner.startswith("220"), banner
            for cmd, code in (
                (b"EHLO healthy\r\n", "250"),
                (b"MAIL FROM:<h@load.test>\r\n", "250"),
                (b"RCPT TO:<postmaster@localhost>\r\n", "250"),
                (b"DATA\r\n", "354"),
                (f"Subject: healthy {n}\r\n\r\nhello\r\n.\r\n".encode(), "250"),
                (b"QUIT\r\n", "221"),
            ):
                w.write(cmd)
                await w.drain()
                rep = await reply(r)
                assert rep[-1].startswith(code), rep
            w.close()
            out.append((True, time.time() - t, ""))
        except Exception as e:  # noqa: BLE001 - reported
            out.append((False, time.time() - t, repr(e)))
        await asyncio.sleep(0.5)


async def probe(port, sources, n):
    """Open n connections, round robin from `sources`; count the banners
    by code."""
    conns, codes = [], {}
    for i in range(n):
        try:
            r, w, banner = await open_conn(port, sources[i % len(sources)])
            codes[banner[:3]] = codes.get(banner[:3], 0) + 1
            conns.append(w)
        except Exception as e:  # noqa: BLE001 - counted
            codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
    return conns, codes


async def run(duration, report):
    port = free_port()
    d = tempfile.mkdtemp(prefix="mgload-")
    conf = f"""[server]
hostname = "load.test"
data_dir = "{d}"
local_domains = ["localhost"]
[[listener]]
address = "127.0.0.1:{port}"
mode = "plain"
[limits]
max_connections = {MAX_CONNECTIONS}
command_timeout = "{COMMAND_TIMEOUT}s"
data_timeout = "{COMMAND_TIMEOUT}s"
[outbound]
nameservers = ["127.0.0.1:9"]
[auth]
enabled = false
"""
    with open(f"{d}/mailgate.toml", "w") as f:
        f.write(conf)
    proc = subprocess.Popen(
        [MAILGATE, "serve", "--config", f"{d}/mailgate.toml"],
        stdout=subprocess.DEVNULL,
        stderr=open(f"{d}/stderr", "w"),
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        base = memory(proc.pid)
        stop, idle_stop = asyncio.Event(), asyncio.Event()
        t0 = time.time()
        idle = Idle()
        sources = [f"127.0.1.{i + 1}" for i in range(SOURCES)]
        tasks = []
        for i in range(IDLE):
            tasks.append(asyncio.create_task(idle.one(port, sources[i % SOURCES], idle_stop)))
            if i % 200 == 199:
                await asyncio.sleep(0.05)
        while idle.open + len(idle.refused) + len(idle.errors) < IDLE and time.time() - t0 < 120:
            await asyncio.sleep(0.1)
        t_open = time.time() - t0
        slow, nonread, good = [], [], []
        tasks += [asyncio.create_task(slowloris(port, t0, slow)) for _ in range(SLOW)]
        nr = asyncio.get_running_loop().run_in_executor(None, non_reader, port, t0, nonread)
        tasks.append(asyncio.create_task(healthy(port, stop, good)))
        await asyncio.sleep(5)
        per_ip_conns, per_ip = await probe(port, ["127.0.2.1"], 110)
        for w in per_ip_conns:
            w.close()
        await asyncio.sleep(5)
        mem_loaded = memory(proc.pid)
        while time.time() - t0 < duration:
            await asyncio.sleep(1)
        mem_end = memory(proc.pid)
        stop.set()  # the well-behaved client
        await asyncio.sleep(1)
        # With the idle ones still open and the others gone, the total
        # limit leaves MAX_CONNECTIONS - IDLE slots (from three addresses,
        # under the per-IP limit).
        extra = ["127.0.3.1", "127.0.3.2", "127.0.3.3"]
        total_conns, total = await probe(port, extra, MAX_CONNECTIONS - IDLE + 50)
        for w in total_conns:
            w.close()
        idle_stop.set()
        await nr
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log = open(f"{d}/log/mainlog").read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)

    ok = [t for s, t, _ in good if s]
    bad = [(t, e) for s, t, e in good if not s]
    kib = 1024
    report += [
        f"idle connections: {idle.open} open of {IDLE} in {t_open:.1f} s "
        f"({len(idle.refused)} refused, {len(idle.errors)} errors, "
        f"{idle.closed_early} closed before the end)",
        f"memory: {base[0] / kib:.1f} MiB RSS at start; with everything open "
        f"{mem_loaded[0] / kib:.1f} MiB RSS / {mem_loaded[1] / kib:.1f} MiB PSS "
        f"({(mem_loaded[1] - base[1]) / IDLE:.1f} KiB PSS per connection); at the end "
        f"{mem_end[0] / kib:.1f} MiB RSS",
        f"per-IP limit (100), 110 connections from one address (total in use about {IDLE + SLOW + 2}): {per_ip}",
        f"total limit ({MAX_CONNECTIONS}), {MAX_CONNECTIONS - IDLE + 50} more with "
        f"{idle.open - idle.closed_early} idle open: {total}",
        f"well-behaved client: {len(ok)} messages accepted, {len(bad)} failed; latency "
        + (
            f"median {statistics.median(ok) * 1000:.1f} ms, max {max(ok) * 1000:.1f} ms"
            if ok
            else "n/a"
        ),
    ]
    report += [f"  failure after {t:.1f} s: {e}" for t, e in bad[:5]]
    cut = sorted(slow)
    report.append(
        f"slowloris ({SLOW}, a byte every 10 s, command timeout {COMMAND_TIMEOUT} s): "
        f"cut after {cut[0][0]:.0f}-{cut[-1][0]:.0f} s having sent {cut[0][1]}-{cut[-1][1]} bytes; "
        f"reply: {cut[0][2]!r}"
        if cut
        else "slowloris: no result"
    )
    for t, sent, stalled, how in nonread:
        report.append(
            f"non-reading client: the server stopped reading after {sent / 1024:.0f} KiB "
            f"(send blocked at {stalled if stalled is None else round(stalled, 1)} s); "
            f"cut at {t:.0f} s: {how}"
        )
    report.append(
        "server log: "
        + ", ".join(
            f"{log.count(p)} x {p!r}"
            for p in (
                "SMTP command timeout",
                "lost while writing: write timed out",
                "too many connections from that IP",
                "too many connections",
            )
        )
    )


def main():
    if not os.path.exists(MAILGATE):
        sys.exit("build first: cargo build --release")
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 90
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * MAX_CONNECTIONS + 1000
    if hard < want:
        sys.exit(f"the open file limit ({hard}) is too low; raise it to {want} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    commit = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    report = [f"# load, {time.strftime('%Y-%m-%d %H:%M:%S')}, commit {commit}, {duration:g} s"]
    asyncio.run(run(duration, report))
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(ROOT, "bench", "results", f"load-{stamp}.txt")
    with open(out, "w") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
