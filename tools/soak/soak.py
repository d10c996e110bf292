#!/usr/bin/env python3
"""A week of flaky links in an hour, then fill/drain cycles: does anything leak or get lost?

Soak (--minutes, default 60): the real release binary on the simulated route at 10x speed,
taps every 1-5 s over the local API, a webhook receiver and a mosquitto broker (own instance on
a free loopback port) each going down and up at random (outages of 1-10 min, scaled by
--outage-scale), and a SIGKILL of the agent every 2-5 min (restarted at once). Every 10 s the
agent's RSS and the store's size are sampled (CSV in the work dir). At the end everything comes
up, the outbox drains, and every acknowledged event must have reached the receiver.

Fill/drain (--cycles, default 20): the receiver down, --fill events (50,000) tapped in, the
receiver up, the outbox drained; the store's size on disk after each fill and each drain.

    cargo build --release && python3 tools/soak/soak.py            # about 75 min
    python3 tools/soak/soak.py --minutes 5 --cycles 3 --fill 5000  # a quick look

Prints the figures and exits non-zero when an acknowledged event was lost.
"""

import argparse
import atexit
import csv
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

TOKEN = "soak-token-0123456789abcdef"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


class Receiver:
    """The back office; `down()` closes the port (the agent sees it offline), `up()` opens it.
    HTTP/1.0: one request per connection, so that a closed port is offline at once."""

    def __init__(self, port: int):
        self.port, self.server, self.lock = port, None, threading.Lock()
        self.ids: set[str] = set()
        self.count = 0

    def up(self):
        if self.server:
            return
        outer = self

        class H(http.server.BaseHTTPRequestHandler):

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with outer.lock:
                    outer.ids.add(self.headers.get("webhook-id", ""))
                    outer.count += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Broker:
    def __init__(self, work: Path, port: int):
        self.conf = work / "mosquitto.conf"
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = None

    def up(self):
        if not self.proc:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)

    def down(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


class Agent:
    def __init__(self, binary: Path, config: Path, log: Path):
        self.binary, self.config, self.log = binary, config, log
        self.proc = None
        self.kills = 0

    def start(self):
        self.proc = subprocess.Popen([str(self.binary), "run", "--config", str(self.config)],
                                     env=dict(os.environ, RUST_LOG="warn"), stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    def proc_status(self, key: str) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def rss_kb(self) -> int:
        return self.proc_status("VmRSS")


class Api:
    def __init__(self, port: int):
        self.port = port
        self.conn = None

    def call(self, method, path, body=None, timeout=10):
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                self.conn.request(method, path, json.dumps(body) if body is not None else None,
                                  {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"})
                r = self.conn.getresponse()
                data = r.read()
                return r.status, (json.loads(data) if data else None)
            except (OSError, http.client.HTTPException, ValueError):
                if self.conn:
                    self.conn.close()
                self.conn = None
        return None, None

    def tap(self, job, status):
        code, body = self.call("POST", f"/api/v1/jobs/{job}/status", {"status": status})
        return body["id"] if code == 201 else None

    def wait_up(self, timeout=60):
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            if self.call("GET", "/api/v1/status", timeout=2)[0] == 200:
                return True
            time.sleep(0.1)
        return False


def wait_drained(api: Api, receiver: Receiver, ids: set, timeout: float) -> bool:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        with receiver.lock:
            if ids <= receiver.ids:
                return True
        time.sleep(0.5)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--fill", type=int, default=50_000)
    ap.add_argument("--outage-scale", type=float, default=1.0, help="multiplies the 1-10 min outages")
    ap.add_argument("--binary", default="target/release/curbside")
    ap.add_argument("--work", default="target/soak")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    if not shutil.which("mosquitto"):
        print("soak: needs mosquitto (apt-get install mosquitto)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    state = work / "state"
    api_port, hook_port, mqtt_port = free_port(), free_port(), free_port()
    config = work / "soak.toml"
    config.write_text(f"""vehicle_id = "van-soak"
state_dir = "{state}"
[gps]
source = "sim"
speed = 10.0
[api]
listen = "127.0.0.1:{api_port}"
token = "{TOKEN}"
[[webhook]]
name = "office"
url = "http://127.0.0.1:{hook_port}/hook"
timeout = "5s"
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
""")
    receiver, broker = Receiver(hook_port), Broker(work, mqtt_port)
    agent, api = Agent(Path(args.binary).resolve(), config, work / "agent.log"), Api(api_port)
    receiver.up()
    broker.up()
    agent.start()
    atexit.register(lambda: (agent.stop(), broker.down()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    assert api.wait_up(), "the agent did not start"
    print(f"soak: seed={seed} minutes={args.minutes} work={work}", flush=True)

    acked: set[str] = set()
    samples = []
    outages = {"webhook": 0, "mqtt": 0}
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    scale = args.outage_scale * args.minutes / 60.0
    next_kill = t0 + rng.uniform(120, 300) * min(1.0, args.minutes / 60 * 4)
    flip = {"webhook": t0 + rng.uniform(60, 600) * scale, "mqtt": t0 + rng.uniform(60, 600) * scale}
    is_up = {"webhook": True, "mqtt": True}
    next_sample = t0
    n = 0
    while time.monotonic() < end:
        now = time.monotonic()
        for part in ("webhook", "mqtt"):
            if now >= flip[part]:
                thing = receiver if part == "webhook" else broker
                if is_up[part]:
                    thing.down()
                    outages[part] += 1
                else:
                    thing.up()
                is_up[part] = not is_up[part]
                flip[part] = now + rng.uniform(60, 600) * scale
        if now >= next_kill:
            agent.kill()
            agent.start()
            api.wait_up()
            next_kill = now + rng.uniform(120, 300) * min(1.0, args.minutes / 60 * 4)
        if now >= next_sample:
            samples.append((round(now - t0), agent.rss_kb(), dir_bytes(state), len(acked), agent.kills,
                            int(is_up["webhook"]), int(is_up["mqtt"])))
            next_sample = now + 10
        job = f"S-{n // 4}"
        eid = api.tap(job, ["heading_to", "arrived", "delivered", "picked_up"][n % 4])
        if eid:
            acked.add(eid)
        n += 1
        time.sleep(rng.uniform(1, 5))

    receiver.up()
    broker.up()
    drained = wait_drained(api, receiver, acked, 900)
    samples.append((round(time.monotonic() - t0), agent.rss_kb(), dir_bytes(state), len(acked), agent.kills, 1, 1))
    with open(work / "soak.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "rss_kb", "store_bytes", "acked", "kills", "webhook_up", "mqtt_up"])
        w.writerows(samples)
    with receiver.lock:
        lost = len(acked - receiver.ids)
    rss = [s[1] for s in samples if s[1]]
    store = [s[2] for s in samples]
    print(f"soak: {args.minutes:.0f} min, {len(acked)} taps acknowledged, {agent.kills} SIGKILLs, "
          f"{outages['webhook']} webhook outages, {outages['mqtt']} broker outages, drained={drained}, lost={lost}")
    print(f"soak: RSS min {min(rss) / 1024:.1f} MB, median {sorted(rss)[len(rss) // 2] / 1024:.1f} MB, "
          f"max {max(rss) / 1024:.1f} MB; store min {min(store) / 1e6:.1f} MB, max {max(store) / 1e6:.1f} MB, "
          f"end {store[-1] / 1e6:.1f} MB")
    step = max(1, len(samples) // 12)
    print("soak: curve (t_s rss_MB store_MB):", " ".join(
        f"{s[0]}:{s[1] / 1024:.1f}/{s[2] / 1e6:.1f}" for s in samples[::step]), flush=True)

    # Fill/drain cycles.
    sizes = []
    for c in range(1, args.cycles + 1):
        receiver.down()
        ids = set()
        lock = threading.Lock()

        def fill(k, count):
            local = Api(api_port)
            for i in range(count):
                eid = local.tap(f"F{c}-{k}-{i // 4}", ["heading_to", "arrived", "delivered", "picked_up"][i % 4])
                if eid:
                    with lock:
                        ids.add(eid)
        threads = [threading.Thread(target=fill, args=(k, args.fill // 4)) for k in range(4)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        fill_s = time.monotonic() - t
        full = dir_bytes(state)
        receiver.up()
        t = time.monotonic()
        ok = wait_drained(api, receiver, ids, 1800)
        drain_s = time.monotonic() - t
        time.sleep(2)
        empty = dir_bytes(state)
        # The agent compacts a drained store after a quiet minute (outbox::compact).
        t = time.monotonic()
        while dir_bytes(state) > full / 4 and time.monotonic() - t < 180:
            time.sleep(2)
        compacted_s = time.monotonic() - t
        compacted = dir_bytes(state)
        acked |= ids
        sizes.append((c, len(ids), full, empty, compacted))
        print(f"cycle {c:2d}: {len(ids)} events in {fill_s:.0f}s, store {full / 1e6:.1f} MB full, drained in "
              f"{drain_s:.0f}s ({'ok' if ok else 'NOT DRAINED'}), store {empty / 1e6:.1f} MB after, "
              f"{compacted / 1e6:.1f} MB {compacted_s:.0f}s later, RSS {agent.rss_kb() / 1024:.1f} MB, "
              f"{agent.proc_status('Threads')} threads", flush=True)
    with receiver.lock:
        lost = len(acked - receiver.ids)
    agent.stop()
    broker.down()
    receiver.down()
    if sizes:
        print(f"fill/drain: store full (MB): {' '.join(f'{s[2] / 1e6:.1f}' for s in sizes)}")
        print(f"fill/drain: store after each drain (MB): {' '.join(f'{s[3] / 1e6:.1f}' for s in sizes)}")
        print(f"fill/drain: store once compacted (MB): {' '.join(f'{s[4] / 1e6:.1f}' for s in sizes)}")
    print(f"soak: acked={len(acked)} lost={lost}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
