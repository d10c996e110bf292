#!/usr/bin/env python3
"""The GPS path end to end through a real UART driver, under the packaged unit's hardening.

The Debian root that tools/systemd-check/run installed the .deb into boots in a qemu guest
(systemd as PID 1, from an ext4 image; a small initramfs mounts it). The guest has a second
16550 UART: qemu's `-serial` number two, which the guest's 8250 driver makes /dev/ttyS1. The
host writes NMEA from a real receiver log (tests/fixtures/gpsd) into it at a receiver's pace.
curbside runs as the packaged service with `device = "/dev/ttyS1"`; a oneshot unit in the guest
prints `curbside status` to the console once the service reports a live fix. On a Raspberry Pi
udev makes serial ports group dialout; this minimal root has no udev, so a tmpfiles rule does.

    tools/systemd-check/uart.py ROOT WORK    (run by tools/systemd-check/run)
"""

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "powercut"))
import vvan  # noqa: E402

LOG = HERE.parent.parent / "tests/fixtures/gpsd/ublox-neo-m9n-nmea.log"

CHECK_SCRIPT = r"""#!/bin/sh
# Waits for curbside's live fix from /dev/ttyS1, then prints it with the service's user.
for i in $(seq 1 100); do
    s=$(curbside status --config /etc/curbside/curbside.toml 2>&1)
    case "$s" in
        *"no live fix"*|*"not connected"*) sleep 2 ;;
        *"gps      serial"*)
            pid=$(systemctl show -p MainPID --value curbside)
            echo "UARTCHECK-OK user=$(stat -c %U /proc/$pid) $(echo "$s" | grep '^gps')"
            exit 0 ;;
        *) sleep 2 ;;
    esac
done
echo "UARTCHECK-FAIL $s"
journalctl -u curbside --no-pager -n 20
"""

CHECK_UNIT = """[Unit]
Description=print the live fix once curbside has one (tools/systemd-check/uart.py)
After=curbside.service
[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/sh /usr/local/bin/uart-check.sh
[Install]
WantedBy=multi-user.target
"""

CONFIG = """vehicle_id = "van-uart"
state_dir = "/var/lib/curbside"
[gps]
source = "serial"
device = "/dev/ttyS1"
baud = 9600
[api]
listen = "127.0.0.1:8080"
"""


def drain(s: socket.socket):
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass


def feed(sock_path: Path, stop: threading.Event):
    """Connects to the guest's second UART and plays the log in a loop, one epoch every 0.2 s."""
    lines = [line for line in LOG.read_bytes().splitlines() if line.startswith(b"$")]
    while not stop.is_set():
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(sock_path))
        except OSError:
            time.sleep(0.2)
            continue
        # What the guest writes to the UART (a tty's echo before the agent sets raw mode, say) is
        # read and dropped: unread, it fills the socket and a UART that cannot transmit blocks the
        # guest's tcdrain, and close, as a real UART with a full transmitter would.
        threading.Thread(target=drain, args=(s,), daemon=True).start()
        try:
            while not stop.is_set():
                for i in range(0, len(lines), 8):
                    s.sendall(b"\r\n".join(lines[i:i + 8]) + b"\r\n")
                    time.sleep(0.2)
                    if stop.is_set():
                        break
        except OSError:
            time.sleep(0.2)
        finally:
            s.close()


def enable_unit(root: Path, target: str, unit: str, path: str):
    """Enables `unit` (its file at `path` in the guest) under `target`, as systemctl enable would."""
    wants = root / "etc/systemd/system" / target
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit
    if not link.is_symlink():
        link.symlink_to(path)


def mask_units(root: Path, units: list[str]):
    """Masks `units` in the guest (a login prompt on the GPS's UART would eat its NMEA)."""
    for unit in units:
        masked = root / "etc/systemd/system" / unit
        if not masked.exists() and not masked.is_symlink():
            masked.symlink_to("/dev/null")


def main() -> int:
    root, work = Path(sys.argv[1]), Path(sys.argv[2])
    (root / "etc/curbside/curbside.toml").write_text(CONFIG)
    (root / "etc/systemd/system/uart-check.service").write_text(CHECK_UNIT)
    (root / "usr/local/bin/uart-check.sh").write_text(CHECK_SCRIPT)
    enable_unit(root, "multi-user.target.wants", "uart-check.service", "/etc/systemd/system/uart-check.service")
    (root / "etc/tmpfiles.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/tmpfiles.d/uart.conf").write_text("z /dev/ttyS1 0660 root dialout -\n")
    mask_units(root, ["serial-getty@ttyS0.service", "getty@tty1.service", "systemd-networkd-wait-online.service"])
    image = work / "root.ext4"
    if image.exists():
        image.unlink()
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(image), "1G"], check=True,
                   stdout=subprocess.DEVNULL)
    initrd = work / "uart-initrd.gz"
    kernel = vvan.build_initramfs(work / "cache", None, initrd, init=HERE / "init-switch.sh")
    gps_sock, console = work / "gps.sock", work / "uart-console.log"
    for p in (gps_sock, console):
        if p.exists():
            p.unlink()
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", vvan.accel(), "-m", "1024", "-smp", "1", "-no-reboot",
         "-display", "none", "-monitor", "none",
         "-kernel", str(kernel), "-initrd", str(initrd), "-append", "console=ttyS0 panic=-1",
         "-drive", f"file={image},format=raw,if=virtio",
         "-serial", f"file:{console}",
         "-chardev", f"socket,id=gps,path={gps_sock},server=on,wait=off", "-serial", "chardev:gps"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stop = threading.Event()
    threading.Thread(target=feed, args=(gps_sock, stop), daemon=True).start()
    t0 = time.monotonic()
    verdict = None
    try:
        while time.monotonic() - t0 < 420 and qemu.poll() is None:
            text = console.read_text(errors="replace") if console.exists() else ""
            for line in text.splitlines():
                if "UARTCHECK-" in line:
                    verdict = line[line.index("UARTCHECK-"):]
                    break
            if verdict:
                time.sleep(1)
                break
            time.sleep(1)
    finally:
        stop.set()
        qemu.kill()
        qemu.wait()
    elapsed = time.monotonic() - t0
    if verdict and verdict.startswith("UARTCHECK-OK") and "user=curbside" in verdict:
        print(f"ok: GPS over /dev/ttyS1 (a 16550 UART in qemu, {vvan.accel()}) through the hardened unit, "
              f"{elapsed:.0f}s after power-on: {verdict[len('UARTCHECK-OK '):].strip()}")
        return 0
    text = console.read_text(errors="replace") if console.exists() else ""
    print(f"FAIL: no live fix through /dev/ttyS1 within {elapsed:.0f}s: {verdict}\n{text[-4000:]}")
    return 1


if __name__ == "__main__":
    shutil.which("qemu-system-x86_64") or vvan.ensure_host_tools()
    sys.exit(main())
