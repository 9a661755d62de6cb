#!/usr/bin/env python3
"""A wire with a fixed delay between two network namespaces.

tc netem is not available in these kernels, so the link is a TUN device in
each namespace and this process in the middle: every IP packet read from
one side is written to the other after half the round-trip time. It also
records, for each TCP packet, when it reached the relay (the sender's send
time: the delay is applied here, after the timestamp), its direction,
ports, flags and payload length, so the harness can tell where a
conversation spent its round trips without decrypting anything.

    delay_relay.py NS_A NS_B RTT_MS LOGFILE

Creates `dly0` in NS_A and NS_B (the caller assigns addresses), prints
"ready" on stdout, and runs until SIGTERM, when it writes LOGFILE:
    time_s  dir(a>b|b>a)  sport  dport  flags  payload_len
"""

import ctypes
import fcntl
import heapq
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def open_tun(ns, name):
    """A TUN device named `name` inside namespace `ns` (the device lives in
    the namespace the opener is in)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    there = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        setns(there)
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    finally:
        setns(home)
        os.close(home)
        os.close(there)
    return fd


def tcp_info(pkt):
    """(sport, dport, flags, payload_len) of an IPv4 TCP packet (flags "U"
    for a UDP datagram, e.g. a DNS query), else None."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4 or pkt[9] not in (6, 17):
        return None
    ihl = (pkt[0] & 0x0F) * 4
    if pkt[9] == 17:
        if len(pkt) < ihl + 8:
            return None
        sport, dport, ulen = struct.unpack_from("!HHH", pkt, ihl)
        return sport, dport, "U", ulen - 8
    total = struct.unpack_from("!H", pkt, 2)[0]
    if len(pkt) < ihl + 20:
        return None
    sport, dport = struct.unpack_from("!HH", pkt, ihl)
    doff = (pkt[ihl + 12] >> 4) * 4
    flags = pkt[ihl + 13]
    names = "".join(c for bit, c in zip((1, 2, 4, 8, 16), "FSRPA") if flags & bit)
    return sport, dport, names or "-", total - ihl - doff


def dns_question(pkt):
    """`name TYPE` of the question in a DNS query datagram."""
    ihl = (pkt[0] & 0x0F) * 4
    i, labels = ihl + 8 + 12, []
    while i < len(pkt) and pkt[i]:
        labels.append(pkt[i + 1:i + 1 + pkt[i]].decode("ascii", "replace"))
        i += 1 + pkt[i]
    qtype = struct.unpack_from("!H", pkt, i + 1)[0] if i + 3 <= len(pkt) else 0
    names = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 15: "MX", 16: "TXT", 28: "AAAA", 43: "DS", 48: "DNSKEY", 52: "TLSA"}
    return "%s %s" % (".".join(labels) + ".", names.get(qtype, qtype))


def main():
    ns_a, ns_b, rtt_ms, logfile = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    one_way = rtt_ms / 2000.0
    fa = open_tun(ns_a, "dly0")
    fb = open_tun(ns_b, "dly0")
    other = {fa: fb, fb: fa}
    label = {fa: "a>b", fb: "b>a"}
    records = []
    # DNSLOG=file: also write each DNS query's question there.
    dnslog = open(os.environ["DNSLOG"], "a") if os.environ.get("DNSLOG") else None
    queue = []  # (due, seq, fd, packet)
    seq = 0
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("ready", flush=True)
    while not stop:
        timeout = None
        if queue:
            timeout = max(0.0, queue[0][0] - time.time())
        try:
            readable, _, _ = select.select([fa, fb], [], [], timeout)
        except InterruptedError:
            continue
        now = time.time()
        for fd in readable:
            while True:
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                info = tcp_info(pkt)
                if info:
                    records.append((now, label[fd]) + info)
                    if dnslog and info[2] == "U" and info[1] == 53:
                        dnslog.write("%.6f\t%s\n" % (now, dns_question(pkt)))
                        dnslog.flush()
                seq += 1
                heapq.heappush(queue, (now + one_way, seq, other[fd], pkt))
        now = time.time()
        while queue and queue[0][0] <= now:
            _, _, fd, pkt = heapq.heappop(queue)
            try:
                os.write(fd, pkt)
            except OSError:
                pass  # the device went down: the run is over
    with open(logfile, "w") as f:
        for r in records:
            f.write("%.6f\t%s\t%d\t%d\t%s\t%d\n" % r)


if __name__ == "__main__":
    main()
