"""`pivh-live doctor`: checks on a fake machine, parsers on recorded output, a real run."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pivh_live import doctor as d
from pivh_live.bundle import CARD_FILE, ONNX_FILE, make_card, sha256_file, write_json_atomic
from pivh_live.commands import doctor as doctor_cmd
from pivh_live.engines.tensorrt import EngineStamp, stamp_path
from pivh_live.errors import PivhError

# `v4l2-ctl -d /dev/video0 --list-formats-ext` of a USB 2 HDMI dongle (MS2109-like).
DONGLE = """ioctl: VIDIOC_ENUM_FMT
\tType: Video Capture

\t[0]: 'MJPG' (Motion-JPEG, compressed)
\t\tSize: Discrete 1920x1080
\t\t\tInterval: Discrete 0.017s (60.000 fps)
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.017s (60.000 fps)
\t[1]: 'YUYV' (YUYV 4:2:2)
\t\tSize: Discrete 1920x1080
\t\t\tInterval: Discrete 0.200s (5.000 fps)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.100s (10.000 fps)
"""
METADATA_NODE = "ioctl: VIDIOC_ENUM_FMT\n\tType: Video Capture\n\n"
PROC_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 0100007F:223D 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   2: 0100007F:223D 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000
"""
PROC_TCP_ANY = "  sl  local_address\n   0: 00000000:223D 00000000:0000 0A 0\n"
PROC_TCP6_LOOP = "  sl  local\n   0: 00000000000000000000000001000000:223D 0:0 0A 0\n"
PROC_TCP6_ANY = "  sl  local\n   0: 00000000000000000000000000000000:223D 0:0 0A 0\n"


class FakeSystem(d.System):
    """A machine described by dictionaries; records the commands it was asked to run."""

    def __init__(self, *, tools=(), runs=None, files=None, devices=(), access=True,
                 disk=(100 << 30, 0, 50 << 30), modules=(), bindable=True) -> None:  # fmt: skip
        self.tools, self.runs, self.files = set(tools), dict(runs or {}), dict(files or {})
        self.devices, self.allowed, self.disk = list(devices), access, disk
        self.modules, self.bindable, self.calls = set(modules), bindable, []

    def which(self, name):
        return f"/usr/bin/{name}" if name in self.tools else None

    def run(self, argv, timeout_s=d.PROBE_TIMEOUT_S):
        self.calls.append(list(argv))
        key = Path(argv[0]).name if argv[0] != sys.executable else "python"
        return self.runs.get(key)

    def glob(self, pattern):
        return self.devices if pattern == "/dev/video*" else []

    def read_text(self, path):
        return self.files.get(path)

    def access(self, path, mode):
        return self.allowed

    def disk_usage(self, path):
        return self.disk

    def can_bind(self, host, port):
        return self.bindable

    def has_module(self, name):
        return name in self.modules


def write_tiny_bundle(root: Path, size: int = 64, heatmap: int = 8) -> Path:
    onnx = pytest.importorskip("onnx", reason="onnx is in the train extra")
    from onnx import TensorProto, helper

    f, k = TensorProto.FLOAT, size // heatmap
    wg = helper.make_tensor("wg", f, [1, 5], [0.5, -1.0, 2.0, 0.0, 3.0])
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "wg"], ["grade_logits"]),
            helper.make_node("Identity", ["flat"], ["valid_logit"]),
            helper.make_node(
                "AveragePool", ["image"], ["heatmap_logits"], kernel_shape=[k, k], strides=[k, k]
            ),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", f, ["N", 1, size, size])],
        [
            helper.make_tensor_value_info("grade_logits", f, ["N", 5]),
            helper.make_tensor_value_info("valid_logit", f, ["N", 1]),
            helper.make_tensor_value_info("heatmap_logits", f, ["N", 1, heatmap, heatmap]),
        ],
        initializer=[wg],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    root.mkdir(parents=True)
    onnx.save(model, str(root / ONNX_FILE))
    card = make_card(
        name="tiny", version="0.0.1", created="2025-01-01T00:00:00+00:00", input_size=size,
        heatmap_size=heatmap, thresholds={"pivh": 0.5, "severe": 0.5, "valid": 0.5}, metrics={},
        dataset={}, sha256={ONNX_FILE: sha256_file(root / ONNX_FILE)}, software={},
    )  # fmt: skip
    write_json_atomic(root / CARD_FILE, card)
    return root


# --- parsers ------------------------------------------------------------------------


def test_v4l2_formats_are_parsed_and_summarized():
    modes = d.parse_v4l2_formats(DONGLE)
    assert d.Mode("MJPG", 1920, 1080, 60.0) in modes
    assert d.Mode("YUYV", 1280, 720, 10.0) in modes
    assert len(modes) == 5
    assert d.summarize_modes(modes) == "MJPG 1920x1080@60, YUYV 1920x1080@5"
    assert d.parse_v4l2_formats(METADATA_NODE) == []


def test_proc_net_tcp_listeners_decode_ipv4_and_ipv6():
    assert d.listeners(PROC_TCP, 8765) == ["127.0.0.1"]  # the ESTABLISHED row (01) is skipped
    assert d.listeners(PROC_TCP, 22) == ["0.0.0.0"]
    assert d.listeners(PROC_TCP6_LOOP, 8765) == ["::1"]
    assert d.listeners(PROC_TCP6_ANY, 8765) == ["::"]
    assert d.is_loopback("::ffff:127.0.0.1") and d.is_loopback("127.0.0.2")
    assert not d.is_loopback("0.0.0.0") and not d.is_loopback("::")


# --- checks against a fake machine ----------------------------------------------------


def test_python_version():
    assert d.check_python((3, 9, 18)).status == d.FAIL
    assert d.check_python((3, 11, 7)).status == d.OK


def test_no_capture_device_is_a_warning():
    (check,) = d.check_capture(FakeSystem())
    assert check.status == d.WARN and "no capture devices" in check.detail


def test_capture_device_formats_via_v4l2_ctl():
    system = FakeSystem(
        tools={"v4l2-ctl"},
        devices=["/dev/video0"],
        runs={"v4l2-ctl": d.Ran(0, DONGLE)},
    )
    (check,) = d.check_capture(system)
    assert check.status == d.OK and check.detail == "MJPG 1920x1080@60, YUYV 1920x1080@5"
    assert "format=mjpeg" in check.fix
    assert system.calls == [["/usr/bin/v4l2-ctl", "-d", "/dev/video0", "--list-formats-ext"]]


def test_metadata_node_timeout_and_permission():
    meta = FakeSystem(tools={"v4l2-ctl"}, devices=["/dev/video1"],
                      runs={"v4l2-ctl": d.Ran(0, METADATA_NODE)})  # fmt: skip
    assert "metadata node" in d.check_capture(meta)[0].detail
    hung = FakeSystem(tools={"v4l2-ctl"}, devices=["/dev/video0"],
                      runs={"v4l2-ctl": d.Ran(-1, "", timed_out=True)})  # fmt: skip
    (check,) = d.check_capture(hung)
    assert check.status == d.WARN and "timed out" in check.detail
    denied = FakeSystem(tools={"v4l2-ctl"}, devices=["/dev/video0"], access=False)
    (check,) = d.check_capture(denied)
    assert check.status == d.FAIL and "usermod -aG video" in check.fix
    assert denied.calls == []


def test_capture_without_v4l2_ctl_probes_with_opencv_in_a_child_process():
    system = FakeSystem(devices=["/dev/video0"], runs={"python": d.Ran(0, "1 1920 1080 60.0\n")})
    device, hint = d.check_capture(system)
    assert device.status == d.OK and device.detail.startswith("OpenCV reads 1920x1080@60")
    assert hint.status == d.WARN and "v4l-utils" in hint.fix
    assert system.calls[0][:2] == [sys.executable, "-c"] and system.calls[0][-1] == "/dev/video0"
    no_frame = FakeSystem(devices=["/dev/video0"], runs={"python": d.Ran(0, "0 0 0 0.0\n")})
    assert d.check_capture(no_frame)[0].status == d.WARN


def test_engines_onnxruntime_missing_fails_others_warn():
    checks = d.check_engines(lambda: {"onnxruntime": "not installed", "tensorrt": "no trt",
                                      "torch": None})  # fmt: skip
    assert [(c.name, c.status) for c in checks] == [
        ("engine onnxruntime", d.FAIL),
        ("engine tensorrt", d.WARN),
        ("engine torch", d.OK),
    ]
    assert checks[1].fix == "no trt"


def test_gpu_from_nvidia_smi_jetson_or_nothing():
    smi = FakeSystem(tools={"nvidia-smi"},
                     runs={"nvidia-smi": d.Ran(0, "NVIDIA H100, 550.54, 81559 MiB\n")})  # fmt: skip
    assert d.check_gpu(smi) == [d.Check("gpu", d.OK, "NVIDIA H100, 550.54, 81559 MiB")]
    jetson = FakeSystem(
        tools={"nvpmodel", "tegrastats"},
        files={
            "/proc/device-tree/model": "NVIDIA Jetson AGX Orin Developer Kit\x00",
            "/etc/nv_tegra_release": "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD...\n",
        },
        runs={
            "nvpmodel": d.Ran(0, "NV Power Mode: 30W\n2\n"),
            "tegrastats": d.Ran(-1, "RAM 2048/30698MB CPU [1%@729] GR3D_FREQ 0%\n", True),
        },
    )
    gpu, power, stats = d.check_gpu(jetson)
    assert gpu.detail == "NVIDIA Jetson AGX Orin Developer Kit (R36 (release), REVISION: 4.0)"
    assert power.status == d.WARN and "nvpmodel -m 0" in power.fix
    assert stats.detail.startswith("RAM 2048/30698MB")
    jetson.runs["nvpmodel"] = d.Ran(0, "NV Power Mode: MAXN\n0\n")
    assert d.check_gpu(jetson)[1].status == d.OK
    (none,) = d.check_gpu(FakeSystem())
    assert none.status == d.WARN and "no NVIDIA GPU" in none.detail


def test_tensorrt_missing_broken_and_engine_stamp(tmp_path):
    (missing,) = d.check_tensorrt(FakeSystem(), None)
    assert missing.status == d.WARN and "python3-libnvinfer" in missing.fix
    broken = FakeSystem(modules={"tensorrt"}, runs={"python": d.Ran(1, "ImportError: libnvinfer")})
    assert d.check_tensorrt(broken, None)[0].status == d.FAIL
    bundle = SimpleNamespace(path=tmp_path, onnx_sha256="a" * 64)
    fine = FakeSystem(modules={"tensorrt"}, runs={"python": d.Ran(0, "10.3.0\n")})
    trt, engine = d.check_tensorrt(fine, bundle)
    assert trt.detail == "TensorRT 10.3.0"
    assert engine.status == d.WARN and "build-engine" in engine.fix  # not built yet
    (tmp_path / "model.engine").write_bytes(b"plan")
    stamp = EngineStamp("10.3.0", "Orin", "8.7", "a" * 64, precision="fp16")
    stamp_path(tmp_path / "model.engine").write_text(json.dumps(stamp.to_dict()))
    assert d.check_tensorrt(fine, bundle)[1].status == d.OK
    old = EngineStamp("8.6.2", "Orin", "8.7", "b" * 64)
    stamp_path(tmp_path / "model.engine").write_text(json.dumps(old.to_dict()))
    engine = d.check_tensorrt(fine, bundle)[1]
    assert engine.status == d.FAIL
    assert (
        "TensorRT 8.6.2, this is 10.3.0" in engine.detail and "another model.onnx" in engine.detail
    )


@pytest.mark.parametrize(
    ("total", "free", "status"),
    [
        (100 << 30, 50 << 30, d.OK),
        (100 << 30, 1 << 30, d.WARN),  # below 2 GiB
        (1000 << 30, 40 << 30, d.WARN),  # below 5 %
        (100 << 30, 100 << 20, d.FAIL),  # below 256 MiB
    ],
)
def test_disk_space_thresholds(tmp_path, total, free, status):
    check = d.check_disk(FakeSystem(disk=(total, total - free, free)), tmp_path / "not" / "yet")
    assert check.status == status
    assert str(tmp_path / "not" / "yet") in check.detail


def test_unwritable_data_dir_fails(tmp_path):
    check = d.check_disk(FakeSystem(access=False), tmp_path / "data")
    assert check.status == d.FAIL and "PIVH_LIVE_DATA" in check.fix


def test_port_listeners_loopback_everywhere_or_free():
    tables = {"/proc/net/tcp": PROC_TCP, "/proc/net/tcp6": ""}
    assert d.check_port(FakeSystem(files=tables), 8765).status == d.OK
    assert "in use on 127.0.0.1" in d.check_port(FakeSystem(files=tables), 8765).detail
    assert "free" in d.check_port(FakeSystem(files=tables), 8000).detail
    exposed = FakeSystem(files={"/proc/net/tcp": PROC_TCP_ANY, "/proc/net/tcp6": PROC_TCP6_ANY})
    check = d.check_port(exposed, 8765)
    assert check.status == d.WARN and "0.0.0.0, ::" in check.detail
    loop6 = FakeSystem(files={"/proc/net/tcp6": PROC_TCP6_LOOP})
    assert d.check_port(loop6, 8765).status == d.OK
    no_proc = FakeSystem(bindable=False)
    assert "in use on 127.0.0.1" in d.check_port(no_proc, 8765).detail


def test_runtime_dir_error_is_a_fail_line():
    def bad() -> Path:
        raise PivhError("socket directory /tmp/x has mode 755; run chmod 700 /tmp/x")

    check = d.check_runtime_dir(bad)
    assert check.status == d.FAIL and check.fix == "run chmod 700 /tmp/x"


def test_model_missing_and_present(tmp_path):
    bundle, check = d.load_model(tmp_path / "nope")
    assert bundle is None and check.status == d.FAIL and "export" in check.fix
    bundle, check = d.load_model(write_tiny_bundle(tmp_path / "tiny"))
    assert bundle is not None and check.status == d.OK
    assert f"sha256 {bundle.onnx_sha256[:12]}" in check.detail


def test_lines_and_exit_code():
    warn = d.Check("gpu", d.WARN, "no NVIDIA GPU found", "use onnxruntime")
    assert warn.line() == "WARN gpu: no NVIDIA GPU found -> use onnxruntime"
    assert d.Check("python", d.OK, "3.11").line() == "OK   python: 3.11"
    assert d.exit_code([warn]) == 0
    assert d.exit_code([warn, d.Check("model", d.FAIL, "missing")]) == 1


# --- the real machine ---------------------------------------------------------------


def test_system_run_times_out_and_keeps_partial_output():
    code = "import sys, time; print('started', flush=True); time.sleep(30)"
    ran = d.System().run([sys.executable, "-c", code], timeout_s=0.5)
    assert ran is not None and ran.timed_out and "started" in ran.out
    assert d.System().run(["/nonexistent/pivh-tool"]) is None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
@pytest.mark.parametrize(("host", "status"), [("127.0.0.1", d.OK), ("0.0.0.0", d.WARN)])
def test_port_check_sees_a_real_listener(host, status):
    with socket.socket() as s:
        s.bind((host, 0))
        s.listen()
        check = d.check_port(d.System(), s.getsockname()[1])
    assert check.status == status and host in check.detail


def test_doctor_command_runs_on_this_machine(tmp_path, monkeypatch, capsys):
    """No GPU, TensorRT or capture device needed: those are WARN lines and the exit code is 0."""
    bundle = write_tiny_bundle(tmp_path / "tiny")
    monkeypatch.setenv("PIVH_LIVE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    doctor_cmd.configure(parser)
    rc = doctor_cmd.main(parser.parse_args(["--model", str(bundle), "--json", "--port", "0"]))
    checks = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in checks]
    assert {"python", "pivh-live", "model", "engine onnxruntime", "onnxruntime", "tensorrt"} <= set(
        names
    )
    assert {"gpu", "recordings disk", "ipc dir", "web port 0"} <= set(names)
    assert any(n.startswith("capture") for n in names)
    assert [c for c in checks if c["status"] == d.FAIL] == [] and rc == 0
    assert all(c["status"] in (d.OK, d.WARN) for c in checks)
    assert (tmp_path / f"pivh-live-{os.getuid()}").is_dir()
    assert (
        str(tmp_path / "data")
        in next(c for c in checks if c["name"] == "recordings disk")["detail"]
    )


def test_a_check_that_raises_becomes_a_fail_line(tmp_path, monkeypatch):
    class Broken(FakeSystem):
        def glob(self, pattern):
            raise RuntimeError("udev went away")

    monkeypatch.setenv("PIVH_LIVE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    checks = d.run_checks(Broken(), model=tmp_path / "none", port=0)
    capture = [c for c in checks if c.name == "capture"]
    assert capture == [
        d.Check(
            "capture",
            d.FAIL,
            "the check itself failed: RuntimeError: udev went away",
            "report this with the output of `pivh-live doctor --json`",
        )
    ]
    assert checks[-1].name == "web port 0"  # the checks after it still ran
