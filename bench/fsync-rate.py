#!/usr/bin/env python3
"""The disk's create+write+fsync rate, from 1 and from 20 threads: the
ceiling for any spool that makes one durable file per message.

    bench/fsync-rate.py DIR [SECONDS]
"""
import os
import sys
import threading
import time

d = sys.argv[1]
secs = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
data = b"x" * 1024


def worker(tid, counts, stop):
    n = 0
    while not stop.is_set():
        p = os.path.join(d, f"f{tid}-{n}")
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        n += 1
    counts[tid] = n


for threads in (1, 20):
    counts = [0] * threads
    stop = threading.Event()
    ts = [threading.Thread(target=worker, args=(i, counts, stop)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    time.sleep(secs)
    stop.set()
    for t in ts:
        t.join()
    el = time.monotonic() - t0
    print(f"fsync rate, {threads} thread(s): {sum(counts) / el:.0f} create+write+fsync/s")
