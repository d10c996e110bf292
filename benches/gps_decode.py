#!/usr/bin/env python3
"""Decode throughput of `curbside gps replay` against gpsd's `gpsdecode`, in the same run.

Input: every log of tests/fixtures/gpsd concatenated 40 times (about 585k lines). Both tools read
the same file and write to /dev/null; runs alternate (gpsdecode, curbside, gpsdecode, ...) so
machine noise hits both alike. Reports the median wall time of each, lines per second, and the
ratio curbside / gpsdecode.

Usage: python3 benches/gps_decode.py [--runs N] [--copies N]
Needs: a release build (cargo build --release) and gpsdecode (Debian: gpsd-clients).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fixtures", "gpsd")
CURBSIDE = os.path.join(ROOT, "target", "release", "curbside")


def build_input(copies):
    logs = sorted(f for f in os.listdir(CORPUS) if f.endswith(".log"))
    data = b"".join(open(os.path.join(CORPUS, f), "rb").read().rstrip(b"\r\n") + b"\n" for f in logs)
    fd, path = tempfile.mkstemp(prefix="curbside-bench-", suffix=".nmea")
    with os.fdopen(fd, "wb") as f:
        for _ in range(copies):
            f.write(data)
    return path, data.count(b"\n") * copies


def timed(argv, stdin_path=None):
    with open(os.devnull, "wb") as null:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        t0 = time.perf_counter()
        p = subprocess.run(argv, stdin=stdin, stdout=null, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t0
        if stdin_path:
            stdin.close()
    if p.returncode != 0:
        sys.exit("%s failed: %s" % (argv[0], p.stderr.decode(errors="replace")[-500:]))
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--copies", type=int, default=40)
    args = ap.parse_args()
    gpsdecode = shutil.which("gpsdecode")
    if not gpsdecode:
        sys.exit("gpsdecode not found: apt-get install gpsd-clients")
    if not os.path.exists(CURBSIDE):
        sys.exit("no release build: cargo build --release")
    path, lines = build_input(args.copies)
    try:
        ours, theirs = [], []
        # One warm-up each, so the file is in the page cache for both.
        timed([gpsdecode], path)
        timed([CURBSIDE, "gps", "replay", path])
        for _ in range(args.runs):
            theirs.append(timed([gpsdecode], path))
            ours.append(timed([CURBSIDE, "gps", "replay", path]))
    finally:
        os.unlink(path)
    t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
    print("input: %d lines (corpus x %d), %d runs each, medians" % (lines, args.copies, args.runs))
    print("gpsdecode:          %8.3f s  %12.0f lines/s" % (t_theirs, lines / t_theirs))
    print("curbside gps replay: %7.3f s  %12.0f lines/s" % (t_ours, lines / t_ours))
    print("ratio: curbside/gpsdecode = %.1fx lines/s" % (t_theirs / t_ours))


if __name__ == "__main__":
    main()
