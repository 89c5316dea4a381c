"""``pivh-live doctor``: check this machine and say what to fix, one line per check.

Each check returns `Check` (OK / WARN / FAIL, what was found, what to do).
Everything the checks read from the machine goes through `System`, so tests
replace it with a fake; every external command runs with a timeout and a
missing tool or device gives a WARN, never a crash or a hang.
"""

from __future__ import annotations

import errno
import importlib.util
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

OK, WARN, FAIL = "OK", "WARN", "FAIL"
DEFAULT_PORT = 8765
PROBE_TIMEOUT_S = 5.0
LOW_DISK_BYTES = 2 << 30
LOW_DISK_FRACTION = 0.05
FULL_DISK_BYTES = 256 << 20
MIN_PYTHON = (3, 10)
POWER_FIX = "sudo nvpmodel -m 0 (MAXN on AGX Orin; see jetson/capture-cards.md)"
TRT_FIX = "on a Jetson it comes with JetPack (python3-libnvinfer); see docs/jetson.md"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return f"{text} -> {self.fix}" if self.fix else text

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _ok(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, OK, detail, fix)


def _warn(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, WARN, detail, fix)


def _fail(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, FAIL, detail, fix)


@dataclass(frozen=True)
class Ran:
    """A finished command: exit code and output (partial when it timed out)."""

    rc: int
    out: str
    timed_out: bool = False


class System:
    """The machine as the checks see it. Tests subclass this and override methods."""

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def run(self, argv: Sequence[str], timeout_s: float = PROBE_TIMEOUT_S) -> Ran | None:
        """Run a command; None when it cannot be started."""
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as e:
            partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
            return Ran(rc=-1, out=partial or "", timed_out=True)
        except OSError:
            return None
        return Ran(rc=done.returncode, out=done.stdout + done.stderr)

    def glob(self, pattern: str) -> list[str]:
        import glob

        return sorted(glob.glob(pattern))

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def access(self, path: str, mode: int) -> bool:
        return os.access(path, mode)

    def disk_usage(self, path: str) -> tuple[int, int, int]:
        usage = shutil.disk_usage(path)
        return usage.total, usage.used, usage.free

    def can_bind(self, host: str, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return False
                raise
        return True

    def has_module(self, name: str) -> bool:
        return importlib.util.find_spec(name) is not None


# --- pure parsers (tested with recorded output) -------------------------------------


@dataclass(frozen=True)
class Mode:
    fourcc: str
    width: int
    height: int
    fps: float


_FMT_RE = re.compile(r"^\s*\[\d+\]:\s*'(\w+)'")
_SIZE_RE = re.compile(r"^\s*Size:\s*\w+\s+(\d+)x(\d+)")
_FPS_RE = re.compile(r"\(([\d.]+)\s*fps\)")


def parse_v4l2_formats(text: str) -> list[Mode]:
    """Modes from ``v4l2-ctl --list-formats-ext`` (discrete sizes; stepwise ones are skipped)."""
    modes: list[Mode] = []
    fourcc, size = "", (0, 0)
    for line in text.splitlines():
        if m := _FMT_RE.match(line):
            fourcc, size = m.group(1), (0, 0)
        elif m := _SIZE_RE.match(line):
            size = (int(m.group(1)), int(m.group(2)))
        elif (m := _FPS_RE.search(line)) and fourcc and size[0]:
            modes.append(Mode(fourcc, size[0], size[1], float(m.group(1))))
    return modes


def summarize_modes(modes: Sequence[Mode]) -> str:
    """Per pixel format, the largest size and that size's best rate: "MJPG 1920x1080@60"."""
    best: dict[str, Mode] = {}
    for mode in modes:
        old = best.get(mode.fourcc)
        key = (mode.width * mode.height, mode.fps)
        if old is None or key > (old.width * old.height, old.fps):
            best[mode.fourcc] = mode
    return ", ".join(f"{m.fourcc} {m.width}x{m.height}@{m.fps:g}" for m in best.values())


def _proc_addr(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    # /proc/net/tcp{,6} prints each 32-bit word in host (little-endian) order.
    fixed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(fixed)


def listeners(proc_net_tcp: str, port: int) -> list[str]:
    """Local addresses listening on ``port`` in a /proc/net/tcp or tcp6 table."""
    found = []
    for line in proc_net_tcp.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":  # 0A: TCP_LISTEN
            continue
        addr, _, port_hex = parts[1].partition(":")
        if int(port_hex, 16) == port:
            found.append(str(_proc_addr(addr)))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


# --- the checks ---------------------------------------------------------------------


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    text = ".".join(str(v) for v in version)
    if tuple(version[:2]) < MIN_PYTHON:
        return _fail("python", f"Python {text}", "pivh-live needs Python 3.10 or newer")
    return _ok("python", f"Python {text} ({sys.executable})")


def check_version() -> Check:
    import pivh_live

    where = Path(pivh_live.__file__).resolve().parent
    return _ok("pivh-live", f"pivh-live {pivh_live.__version__} ({where})")


def check_capture(system: System) -> list[Check]:
    devices = system.glob("/dev/video*")
    if not devices:
        return [
            _warn(
                "capture",
                "no capture devices (/dev/video*)",
                "plug in the HDMI capture card and check `dmesg | tail`; the phantom: source "
                "works without one",
            )
        ]
    v4l2_ctl = system.which("v4l2-ctl")
    checks = [_check_device(system, dev, v4l2_ctl) for dev in devices]
    if v4l2_ctl is None:
        checks.append(
            _warn(
                "capture",
                "v4l2-ctl not found; formats probed with OpenCV",
                "sudo apt install v4l-utils",
            )
        )
    return checks


def _check_device(system: System, dev: str, v4l2_ctl: str | None) -> Check:
    name = f"capture {dev}"
    if not system.access(dev, os.R_OK | os.W_OK):
        return _fail(
            name,
            "no read/write permission",
            "sudo usermod -aG video $USER, then log out and in",
        )
    if v4l2_ctl is None:
        return _opencv_probe(system, dev)
    ran = system.run([v4l2_ctl, "-d", dev, "--list-formats-ext"])
    if ran is None or ran.timed_out or ran.rc != 0:
        why = "timed out" if ran is not None and ran.timed_out else "failed"
        return _warn(
            name,
            f"v4l2-ctl --list-formats-ext {why}",
            "unplug and replug the card; close other programs using it",
        )
    modes = parse_v4l2_formats(ran.out)
    if not modes:
        return _ok(name, "no video formats (a metadata node: UVC cards add one; skip it)")
    summary = summarize_modes(modes)
    fourccs = {m.fourcc for m in modes}
    if "MJPG" in fourccs and any(m.fourcc != "MJPG" and m.fps < 20 for m in modes):
        return _ok(name, summary, "use format=mjpeg for full frame rate (USB 2 bandwidth)")
    return _ok(name, summary)


_OPENCV_PROBE = (
    "import sys, cv2\n"
    "cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_V4L2)\n"
    "ok = cap.isOpened() and cap.read()[0]\n"
    "w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)\n"
    "print(int(ok), int(w), int(h), cap.get(cv2.CAP_PROP_FPS))\n"
)


def _opencv_probe(system: System, dev: str) -> Check:
    # In a child process: a wedged driver can block VideoCapture forever.
    ran = system.run([sys.executable, "-c", _OPENCV_PROBE, dev])
    name = f"capture {dev}"
    fields = ran.out.split() if ran is not None and ran.rc == 0 else []
    if len(fields) != 4 or fields[0] != "1":
        why = "timed out" if ran is not None and ran.timed_out else "gave no frame"
        return _warn(
            name,
            f"OpenCV probe {why}",
            "check the cable and the scanner output; install v4l-utils",
        )
    return _ok(name, f"OpenCV reads {fields[1]}x{fields[2]}@{float(fields[3]):g} (default)")


def check_engines(available: Callable[[], dict[str, str | None]] | None = None) -> list[Check]:
    if available is None:
        from pivh_live.engines import available_engines as available
    checks = []
    for name, reason in available().items():
        if reason is None:
            checks.append(_ok(f"engine {name}", "available"))
        else:
            status = FAIL if name == "onnxruntime" else WARN
            checks.append(Check(f"engine {name}", status, "unavailable", reason))
    return checks


def check_gpu(system: System) -> list[Check]:
    if system.which("nvidia-smi"):
        query = "--query-gpu=name,driver_version,memory.total"
        ran = system.run(["nvidia-smi", query, "--format=csv,noheader"])
        if ran is not None and ran.rc == 0 and ran.out.strip():
            gpus = "; ".join(line.strip() for line in ran.out.strip().splitlines())
            return [_ok("gpu", gpus)]
    model = (system.read_text("/proc/device-tree/model") or "").strip("\x00 \n")
    if "jetson" in model.lower() or "orin" in model.lower():
        return _jetson_checks(system, model)
    return [_torch_gpu(system)]


def _torch_gpu(system: System) -> Check:
    if system.has_module("torch"):
        ran = system.run(
            [
                sys.executable,
                "-c",
                "import torch; c = torch.cuda.is_available(); "
                "print(torch.cuda.get_device_name(0) if c else '')",
            ],
            timeout_s=30.0,
        )
        if ran is not None and ran.rc == 0 and ran.out.strip():
            return _ok("gpu", f"{ran.out.strip()} (torch.cuda)")
    return _warn(
        "gpu",
        "no NVIDIA GPU found",
        "onnxruntime runs on the CPU; TensorRT needs an NVIDIA GPU",
    )


def _jetson_checks(system: System, model: str) -> list[Check]:
    release = (system.read_text("/etc/nv_tegra_release") or "").splitlines()
    l4t = release[0].strip("# ").split(", GCID")[0] if release else "L4T release unknown"
    checks = [_ok("gpu", f"{model} ({l4t})")]
    if system.which("nvpmodel"):
        ran = system.run(["nvpmodel", "-q"])
        mode = next((ln for ln in (ran.out if ran else "").splitlines() if "Mode" in ln), "")
        if "MAXN" in mode:
            checks.append(_ok("power mode", mode.strip()))
        else:
            checks.append(_warn("power mode", mode.strip() or "unknown", POWER_FIX))
    if system.which("tegrastats"):
        ran = system.run(["tegrastats", "--interval", "500"], timeout_s=1.5)
        first = (ran.out if ran else "").strip().splitlines()
        if first:
            checks.append(_ok("tegrastats", first[0][:160]))
    return checks


def check_tensorrt(system: System, bundle: Any | None) -> list[Check]:
    if not system.has_module("tensorrt"):
        return [_warn("tensorrt", "not installed", TRT_FIX)]
    ran = system.run(
        [sys.executable, "-c", "import tensorrt; print(tensorrt.__version__)"], timeout_s=30.0
    )
    if ran is None or ran.rc != 0:
        last = (ran.out.strip().splitlines() or ["?"])[-1] if ran else "?"
        return [
            _fail(
                "tensorrt",
                f"installed but import fails: {last[:120]}",
                "reinstall python3-libnvinfer; see docs/jetson.md",
            )
        ]
    version = ran.out.strip()
    checks = [_ok("tensorrt", f"TensorRT {version}")]
    if bundle is not None:
        checks.append(_engine_stamp(bundle, version))
    return checks


def _engine_stamp(bundle: Any, trt_version: str) -> Check:
    from pivh_live.engines.tensorrt import default_engine_path, read_stamp
    from pivh_live.errors import EngineError

    path = default_engine_path(bundle)
    if not path.is_file():
        return _warn(
            "tensorrt engine", f"{path} not built", f"pivh-live build-engine {bundle.path}"
        )
    try:
        stamp = read_stamp(path)
    except EngineError as e:
        return _fail(
            "tensorrt engine", str(e).split(";")[0], f"pivh-live build-engine {bundle.path}"
        )
    problems = []
    if stamp.tensorrt != trt_version:
        problems.append(f"built with TensorRT {stamp.tensorrt}, this is {trt_version}")
    if stamp.bundle_sha256 != bundle.onnx_sha256:
        problems.append("built from another model.onnx")
    if problems:
        return _fail(
            "tensorrt engine", "; ".join(problems), f"pivh-live build-engine {bundle.path}"
        )
    return _ok(
        "tensorrt engine",
        f"{path.name}: {stamp.precision}, {stamp.gpu}, batch 1..{stamp.max_batch}",
    )


def check_onnxruntime(system: System) -> Check:
    if not system.has_module("onnxruntime"):
        return _fail("onnxruntime", "not installed", "pip install onnxruntime")
    import onnxruntime as ort

    providers = ort.get_available_providers()
    detail = f"onnxruntime {ort.__version__}: {', '.join(providers)}"
    return _ok("onnxruntime", detail)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(system: System, data_dir: Path) -> Check:
    name = "recordings disk"
    where = _existing_parent(data_dir)
    if not system.access(str(where), os.W_OK):
        return _fail(
            name,
            f"{where} is not writable (sessions go to {data_dir})",
            "set PIVH_LIVE_DATA to a writable directory",
        )
    total, _used, free = system.disk_usage(str(where))
    detail = f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB at {data_dir}"
    if free < FULL_DISK_BYTES:
        return _fail(name, detail, "free disk space or set PIVH_LIVE_DATA elsewhere")
    if free < LOW_DISK_BYTES or free < LOW_DISK_FRACTION * total:
        return _warn(name, detail, "free disk space: recordings stop when the disk is full")
    return _ok(name, detail)


def load_model(model: Path | None) -> tuple[Any | None, Check]:
    """The bundle (or None) and its check line."""
    from pivh_live.bundle import default_bundle_path, load_bundle
    from pivh_live.errors import PivhError

    try:
        bundle = load_bundle(model or default_bundle_path())
    except PivhError as e:
        return None, _fail("model", str(e).split(";")[0], str(e).partition("; ")[2])
    detail = f"{bundle.name} {bundle.version}, model.onnx sha256 {bundle.onnx_sha256[:12]}"
    if bundle.tta != "none":
        detail += f", test-time augmentation {bundle.tta}"
    if bundle.norm != "none":
        detail += f", input norm {bundle.norm}"
    return bundle, _ok("model", f"{detail} ({bundle.path})")


def check_runtime_dir(runtime_dir: Callable[[], Path] | None = None) -> Check:
    from pivh_live.errors import PivhError

    if runtime_dir is None:
        from pivh_live.transport import runtime_dir
    try:
        path = runtime_dir()
    except PivhError as e:
        return _fail("ipc dir", str(e).split(";")[0], str(e).partition("; ")[2])
    return _ok("ipc dir", f"{path} (private, 0700)")


def check_port(system: System, port: int) -> Check:
    name = f"web port {port}"
    tables = [system.read_text(f"/proc/net/{t}") for t in ("tcp", "tcp6")]
    if any(t is not None for t in tables):
        found = [a for t in tables if t for a in listeners(t, port)]
    else:  # no /proc (not Linux): a bind test says free or not, not where
        found = [] if system.can_bind("127.0.0.1", port) else ["127.0.0.1"]
    if not found:
        return _ok(name, "free; the display binds 127.0.0.1 (this machine only)")
    exposed = [a for a in found if not is_loopback(a)]
    if exposed:
        return _warn(
            name,
            f"something listens on {', '.join(exposed)} (all interfaces)",
            f"the display must listen on 127.0.0.1 only; see `ss -ltnp 'sport = :{port}'`",
        )
    return _ok(name, f"in use on {', '.join(found)} (loopback only; the analyser running?)")


def _guarded(name: str, check: Callable[[], Check | list[Check]]) -> list[Check]:
    try:
        result = check()
    except Exception as e:  # a check must report, never stop the doctor
        detail = f"the check itself failed: {type(e).__name__}: {e}"[:200]
        return [_fail(name, detail, "report this with the output of `pivh-live doctor --json`")]
    return result if isinstance(result, list) else [result]


def run_checks(
    system: System | None = None, model: Path | None = None, port: int = DEFAULT_PORT
) -> list[Check]:
    """Every check, in the order printed; a check that raises becomes a FAIL line."""
    sys_ = system or System()
    loaded: list[Any] = [None]

    def model_check() -> Check:
        loaded[0], check = load_model(model)
        return check

    def disk() -> Check:
        from pivh_live.recording.store import data_root

        return check_disk(sys_, data_root())

    steps: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("python", check_python),
        ("pivh-live", check_version),
        ("model", model_check),
        ("engines", check_engines),
        ("onnxruntime", lambda: check_onnxruntime(sys_)),
        ("tensorrt", lambda: check_tensorrt(sys_, loaded[0])),
        ("gpu", lambda: check_gpu(sys_)),
        ("capture", lambda: check_capture(sys_)),
        ("recordings disk", disk),
        ("ipc dir", check_runtime_dir),
        (f"web port {port}", lambda: check_port(sys_, port)),
    ]
    return [c for name, step in steps for c in _guarded(name, step)]


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0
