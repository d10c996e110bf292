#!/usr/bin/env python3
"""The arm64 package on an emulated ARM machine (tools/arm-system/run prepares ROOT and DEB).

- The Debian arm64 root (with the package's dependencies, systemd, udev and Debian's arm64 kernel)
  becomes an ext4 image; the machine is `qemu-system-aarch64 -M virt` (TCG: no KVM for ARM here),
  booting Debian's kernel and initramfs, systemd as PID 1, its console on a virtio console (hvc0)
  so that the PL011 UART is free: /dev/ttyAMA0, the name a Raspberry Pi gives its GPIO UART.
- The disk is served by nbdkit's cache filter, as tools/powercut does (vvan.Van): it keeps only
  what the guest flushed, so killing the machine is a power cut.
- First boot: `arm-check.service` installs the .deb with dpkg -i and runs the checks of
  tools/systemd-check/checks.sh inside the guest, then the GPS check, while the host feeds the
  UART from a real receiver log (tools/systemd-check/uart.py's feed).
- Then power cuts: clients tap over a forwarded port (tools/powercut's Tapper), the machine is
  killed at a random moment, booted again, and every acknowledged tap must be in the outbox.

    tools/arm-system/arm.py ROOT WORK DEB [--cuts N] [--expect-loss]

The last line: `arm-system: boot_s=B checks=passed gps_fix=ttyAMA0 cuts=N acked=A lost=L`.
"""

import argparse
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tools/powercut"))
sys.path.insert(0, str(REPO / "tools/systemd-check"))
import powercut  # noqa: E402
import uart  # noqa: E402
import vvan  # noqa: E402

UNIT = """[Unit]
Description=install curbside's arm64 package and check it (tools/arm-system), once
After=basic.target network.target
ConditionPathExists=!/var/lib/arm-check.done
[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/hvc0
ExecStart=/usr/local/sbin/arm-check
[Install]
WantedBy=multi-user.target
"""


def prepare(root: Path, deb: Path, work: Path, expect_loss: bool) -> tuple[Path, Path, Path]:
    """Puts the package, the checks and the unit in the root; returns (image, kernel, initrd)."""
    shutil.copy(deb, root / "root/curbside.deb")
    (root / "usr/local/lib").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "tools/systemd-check/checks.sh", root / "usr/local/lib/checks.sh")
    shutil.copy(REPO / "tools/systemd-check/receiver.py", root / "usr/local/bin/receiver.py")
    shutil.copy(HERE / "guest-check", root / "usr/local/sbin/arm-check")
    (root / "usr/local/sbin/arm-check").chmod(0o755)
    (root / "etc/systemd/system/arm-check.service").write_text(UNIT)
    uart.enable_unit(root, "multi-user.target.wants", "arm-check.service", "/etc/systemd/system/arm-check.service")
    # The UART is the GPS's, the console is hvc0: no login prompt on either.
    uart.mask_units(root, ["serial-getty@ttyAMA0.service", "serial-getty@hvc0.service", "getty@tty1.service",
                           "systemd-networkd-wait-online.service", "apt-daily.timer", "apt-daily-upgrade.timer",
                           "e2scrub_reap.service", "man-db.timer"])
    (root / "etc/hostname").write_text("van-arm64\n")
    # The network qemu's user mode gives (the host forwards a port to the guest's API).
    (root / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/network/10-qemu.network").write_text(
        "[Match]\nName=en* eth*\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n")
    for target, unit in [("multi-user.target.wants", "systemd-networkd.service"),
                         ("sockets.target.wants", "systemd-networkd.socket")]:
        uart.enable_unit(root, target, unit, f"/lib/systemd/system/{unit}")
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults,noatime 0 1\n")
    # The negative control: once installed and checked, the guest remounts its root barrier=0
    # (no flush reaches the disk) and keeps it so; the cuts must then lose acknowledged taps.
    control = root / "etc/arm-control"
    if expect_loss:
        control.write_text("barrier=0\n")
    elif control.exists():
        control.unlink()
    (root / "etc/powercut-token").write_text(powercut.TOKEN + "\n")
    image = work / "arm64-root.ext4"
    if image.exists():
        image.unlink()
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(image), "2G"], check=True,
                   stdout=subprocess.DEVNULL)
    # An initramfs of a few modules and the root's own busybox, as tools/systemd-check's guest
    # has (Debian's mkinitramfs would take minutes under qemu-user while the root is built).
    version = next((root / "lib/modules").iterdir()).name
    initrd = work / "arm64-initrd.gz"
    kernel = vvan.build_initramfs(work, None, initrd, init=REPO / "tools/systemd-check/init-switch.sh",
                                  kernel=(root, version), busybox=root / "bin/busybox",
                                  modules=vvan.MODULES + ["virtio_console"])
    return image, kernel, initrd


def machine(kernel: Path, initrd: Path, api_port: int, gps_sock: Path):
    def cmd(disk_sock: Path, console: Path) -> list[str]:
        return ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-accel", "tcg,thread=multi",
                "-smp", "2", "-m", "1024", "-no-reboot", "-display", "none", "-monitor", "none",
                "-kernel", str(kernel), "-initrd", str(initrd),
                "-append", "root=/dev/vda rw console=hvc0 panic=-1 quiet",
                "-drive", f"file=nbd:unix:{disk_sock},format=raw,if=none,id=d0,cache=writeback",
                "-device", "virtio-blk-pci,drive=d0",
                "-device", "virtio-serial-pci", "-chardev", f"file,id=con,path={console}",
                "-device", "virtconsole,chardev=con",
                "-chardev", f"socket,id=gps,path={gps_sock},server=on,wait=off", "-serial", "chardev:gps",
                "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{api_port}-:8080",
                "-device", "virtio-net-pci,netdev=n0,romfile="]
    return cmd


def first_boot(van: vvan.Van, limit: float) -> tuple[bool, float]:
    """Streams the guest's check lines until its verdict; returns (passed, boot seconds)."""
    t0 = time.monotonic()
    shown, boot_s = 0, None
    while time.monotonic() - t0 < limit and van.alive():
        lines = [line for line in van.console_text().splitlines() if line.startswith(("ok:", "..:", "FAIL", "ARM-CHECK"))]
        for line in lines[shown:]:
            print(f"  {line}", flush=True)
            if line.startswith("ok: booted") and boot_s is None:
                boot_s = float(line.split()[-2])
            if line.startswith("ARM-CHECK"):
                if not line.startswith("ARM-CHECK passed"):
                    print(van.console_text()[-6000:])
                return line.startswith("ARM-CHECK passed"), boot_s or time.monotonic() - t0
        shown = len(lines)
        time.sleep(1)
    print(van.console_text()[-6000:])
    return False, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("deb", type=Path)
    ap.add_argument("--cuts", type=int, default=5)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--expect-loss", action="store_true",
                    help="the negative control: the root mounted barrier=0 must lose acknowledged taps")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    image, kernel, initrd = prepare(args.root, args.deb, work, args.expect_loss)
    api_port, gps_sock = vvan.free_port(), work / "gps.sock"
    van = vvan.Van(work, kernel, initrd, image, "", api_port, machine=machine(kernel, initrd, api_port, gps_sock))
    stop = threading.Event()
    threading.Thread(target=uart.feed, args=(gps_sock, stop), daemon=True).start()
    for old in work.glob("console-*.log"):
        old.unlink()
    try:
        van.boot("console-0.log")
        passed, boot_s = first_boot(van, limit=1500)
        if not passed:
            err = (work / "qemu.err").read_text(errors="replace") if (work / "qemu.err").exists() else ""
            print(f"arm-system: FAIL: the checks in the guest did not pass{chr(10) + 'qemu: ' + err[-2000:] if err else ''}")
            return 1
        acked: dict[str, dict] = {}
        lost: set[str] = set()
        boots = []
        for n in range(1, args.cuts + 1):
            if powercut.wait_up(van, api_port, timeout=600) is None:
                print(f"arm-system: FAIL: the agent did not answer after boot {n}\n{van.console_text()[-4000:]}")
                return 1
            tapper = powercut.Tapper(api_port, acked, n, threads=2)
            before = len(acked)
            tapper.start()
            time.sleep(vvan.jitter(2.0, 12.0, rng))
            van.cut()
            tapper.halt()
            t0 = time.monotonic()
            van.boot(f"console-{n}.log")
            status = powercut.wait_up(van, api_port, timeout=600)
            if status is None:
                print(f"arm-system: FAIL: no answer after cut {n}\n{van.console_text()[-4000:]}")
                return 1
            boots.append(time.monotonic() - t0)
            present, unreadable, truncated = powercut.outbox_ids(api_port)
            missing = set(acked) - present
            lost |= missing
            print(f"cut {n:2d}: +{len(acked) - before} acked, {len(acked)} in all, back in {boots[-1]:.0f}s, "
                  f"lost so far {len(lost)}{' (listing truncated)' if truncated else ''}"
                  f"{f', {unreadable} unreadable' if unreadable else ''}", flush=True)
            if truncated:
                print("arm-system: FAIL: the outbox listing was cut at its limit")
                return 1
        print(f"arm-system: boot_s={boot_s:.0f} checks=passed gps_fix=ttyAMA0 cuts={args.cuts} "
              f"acked={len(acked)} lost={len(lost)}")
        if args.expect_loss:
            if not lost:
                print("arm-system: negative control FAILED: nothing was lost on a root that cannot keep writes")
                return 1
            print("arm-system: negative control: a root mounted barrier=0 lost acknowledged taps, as it must")
            return 0
        return 0 if not lost else 1
    finally:
        stop.set()
        van.cut()


if __name__ == "__main__":
    sys.exit(main())
