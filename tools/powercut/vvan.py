"""A virtual van: a qemu guest whose disk keeps only what the guest flushed, so that `kill -9`
of the guest is an honest power cut.

Parts (all from Debian's packages, cached under the work directory):
- the guest kernel from `linux-image-amd64` (downloaded and unpacked, never installed on the
  host) and an initramfs made here: busybox-static, the virtio/ext4 modules in the order
  `modprobe --show-depends` gives, the binary under test with the libraries `ldd` lists, and
  `init.sh`;
- the state disk: a raw ext4 image served by `nbdkit --filter=cache ... cache=writeback` on a
  unix socket. The cache filter holds writes in nbdkit's memory until the guest sends a flush;
  killing nbdkit with qemu therefore loses exactly what the guest did not flush, as a power
  cut loses what an SD card's controller had not committed;
- user-mode networking: the host reaches the guest's port 8080 through a forwarded loopback
  port, and the guest reaches the host at 10.0.2.2.

KVM is used only when the CPU offers vmx/svm and the paravirtual `kvm_pvm` is not loaded;
otherwise TCG, and `accel` says which.
"""

import gzip
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "ext4"]


def sbin(tool: str) -> str:
    return shutil.which(tool) or f"/sbin/{tool}"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def apt_install(packages, backports=()):
    """Installs missing Debian packages (as root or through sudo)."""
    missing = [p for p in list(packages) + list(backports) if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout != "install ok installed"]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and not shutil.which("sudo"):
        raise SystemExit(f"powercut: needs the Debian packages {' '.join(missing)}; run as root or install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if backports and not any("bookworm-backports" in p.read_text(errors="ignore")
                             for p in Path("/etc/apt").rglob("*.list*") if p.is_file()) \
            and not any("bookworm-backports" in p.read_text(errors="ignore")
                        for p in Path("/etc/apt/sources.list.d").glob("*.sources")):
        if "bookworm" in Path("/etc/os-release").read_text():
            run(sudo + ["sh", "-c", "echo 'deb http://deb.debian.org/debian bookworm-backports main' "
                                    "> /etc/apt/sources.list.d/backports.list"])
    run(sudo + ["apt-get", "update", "-qq"], env=env)
    plain = [p for p in missing if p not in backports]
    if plain:
        run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + plain, env=env,
            stdout=subprocess.DEVNULL)
    bp = [p for p in missing if p in backports]
    if bp:
        # Images that carry qemu-utils from bookworm-backports refuse bookworm's qemu-system-x86.
        r = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                   "-t", "bookworm-backports"] + bp, env=env, stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + bp, env=env,
                stdout=subprocess.DEVNULL)


def ensure_host_tools():
    apt_install(["nbdkit", "busybox-static", "kmod", "e2fsprogs"], backports=["qemu-system-x86"])


def accel():
    """'kvm' only where it works for a stock kernel, else 'tcg'."""
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        mods = Path("/proc/modules").read_text()
    except OSError:
        return "tcg"
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK) and (" vmx" in cpu or " svm" in cpu) and "kvm_pvm" not in mods
    return "kvm" if usable else "tcg"


# ---- the guest image -------------------------------------------------------------------------

def kernel_tree(cache: Path) -> tuple[Path, str]:
    """Unpacks Debian's amd64 kernel package under cache/kernel; returns (root, version)."""
    root = cache / "kernel"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        dep = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True,
                             check=True).stdout
        pkg = next(line.split()[1] for line in dep.splitlines()
                   if line.strip().startswith("Depends: linux-image-") and line.split()[1][12].isdigit())
        run(["apt-get", "download", pkg], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deb = next(root.glob("*.deb"))
        run(["dpkg-deb", "-x", str(deb), str(root / "x")])
        deb.unlink()
        version = next((root / "x/lib/modules").iterdir()).name
        run([sbin("depmod"), "-b", str(root / "x"), version])
        (root / "done").write_text(version)
    return root / "x", (root / "done").read_text()


def module_order(kroot: Path, version: str, modules=MODULES) -> list[Path]:
    seen, order = set(), []
    for m in modules:
        out = subprocess.run([sbin("modprobe"), "-d", str(kroot), "-S", version, "--show-depends", m],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod" and parts[1] not in seen:
                seen.add(parts[1])
                order.append(Path(parts[1]))
    return order


class Cpio:
    """A newc cpio archive written by hand (no cpio binary needed; device nodes without root)."""

    def __init__(self):
        self.parts, self.ino, self.dirs = [], 1, set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        self.ino += 1
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0))
        blob = hdr.encode() + name_b
        blob += b"\0" * (-len(blob) % 4) + data
        blob += b"\0" * (-len(blob) % 4)
        self.parts.append(blob)

    def dir(self, name):
        name = name.strip("/")
        if not name or name in self.dirs:
            return
        self.dir(os.path.dirname(name))
        self.dirs.add(name)
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o755):
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor):
        self.dir(os.path.dirname(name.strip("/")))
        self._entry(name.strip("/"), stat.S_IFCHR | 0o600, rdev=(major, minor))

    def bytes(self):
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


def build_initramfs(cache: Path, binary: Path | None, out: Path, extra: dict | None = None,
                    init: Path = HERE / "init.sh", kernel: tuple[Path, str] | None = None,
                    busybox: Path = Path("/bin/busybox"), modules=MODULES) -> Path:
    """The guest's userland (or, with another `init`, what it takes to reach a root file system);
    returns the kernel image path. `kernel` is another (root, version) whose /boot and
    /lib/modules to use (an arm64 root's, with that root's `busybox`); by default Debian's amd64
    kernel, unpacked under `cache`."""
    kroot, version = kernel or kernel_tree(cache)
    c = Cpio()
    for d in ["dev", "proc", "sys", "state", "tmp", "etc", "bin"]:
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3)
    c.file("bin/busybox", busybox.read_bytes())
    for tool in ["sh", "mount", "umount", "insmod", "ip", "sleep", "cat", "mkdir", "echo", "poweroff", "sync",
                 "ls", "grep", "sed", "hostname", "switch_root"]:
        c.symlink(f"bin/{tool}", "busybox")
    mods = []
    for m in module_order(kroot, version, modules):
        name = f"lib/modules/{m.name}"
        c.file(name, m.read_bytes(), 0o644)
        mods.append("/" + name)
    c.file("etc/modules.order", ("\n".join(mods) + "\n").encode(), 0o644)
    if binary is not None:
        c.file("bin/curbside", binary.read_bytes())
        for lib in libraries(binary):
            c.file(lib.lstrip("/"), Path(lib).read_bytes())
    # A trust store as on a real gateway (older binaries needed one even for http:// endpoints).
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca.exists():
        c.file("etc/ssl/certs/ca-certificates.crt", ca.read_bytes(), 0o644)
    for name, data in (extra or {}).items():
        c.file(name, data, 0o644)
    c.file("init", init.read_bytes())
    out.write_bytes(gzip.compress(c.bytes(), compresslevel=1))
    return kroot / "boot" / f"vmlinuz-{version}"


def libraries(binary: Path) -> list[str]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                libs.append(p)
                break
    return libs


def make_disk(path: Path, mb: int = 256):
    with open(path, "wb") as f:
        f.truncate(mb * 1024 * 1024)
    run(["mkfs.ext4", "-q", "-F", "-L", "state", str(path)], stdout=subprocess.DEVNULL)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Van:
    """One boot of the guest: nbdkit serving the disk, qemu running the kernel."""

    def __init__(self, work: Path, kernel: Path, initrd: Path, disk: Path, append: str, api_port: int,
                 extra_qemu=(), machine=None):
        """`machine(disk_sock, console)` gives another guest's whole qemu command (an emulated ARM
        machine, tools/arm-system); by default an x86_64 guest as described above."""
        self.work, self.kernel, self.initrd, self.disk = work, kernel, initrd, disk
        self.append, self.api_port, self.extra = append, api_port, list(extra_qemu)
        self.machine = machine
        self.nbd = self.qemu = None
        self.console = None

    def boot(self, console_name: str):
        sock = self.work / "nbd.sock"
        if sock.exists():
            sock.unlink()
        self.nbd = subprocess.Popen(
            ["nbdkit", "-f", "-U", str(sock), "--filter=cache", "file", f"file={self.disk}", "cache=writeback"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.02)
        self.console = self.work / console_name
        if self.machine is not None:
            cmd = self.machine(sock, self.console)
            with open(self.work / "qemu.err", "ab") as err:
                self.qemu = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            return
        cmd = ["qemu-system-x86_64", "-accel", accel(), "-m", "512", "-smp", "1", "-no-reboot",
               "-display", "none", "-monitor", "none", "-serial", f"file:{self.console}",
               "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.append,
               "-drive", f"file=nbd:unix:{sock},format=raw,if=virtio,cache=writeback",
               "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.api_port}-:8080",
               "-device", "virtio-net-pci,netdev=n0"] + self.extra
        self.qemu = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.qemu is not None and self.qemu.poll() is None

    def cut(self):
        """The power cut: qemu and the disk's volatile cache die at the same instant."""
        for p in (self.qemu, self.nbd):
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for p in (self.qemu, self.nbd):
            if p:
                p.wait()
        self.qemu = self.nbd = None

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""


def jitter(a: float, b: float, rng: random.Random) -> float:
    return a + (b - a) * rng.random()
