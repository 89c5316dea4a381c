"""`pivh-live review` as a process: token printed once, pages behind it, clean stop."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

import httpx

LAUNCH = (
    "import argparse, sys\n"
    "from pivh_live.commands import review\n"
    "p = argparse.ArgumentParser()\n"
    "review.configure(p)\n"
    "sys.exit(review.main(p.parse_args(sys.argv[1:])))\n"
)


def read_until(proc: subprocess.Popen, pattern: str, timeout_s: float = 30.0) -> re.Match:
    """Read the child's stderr line by line until ``pattern`` matches (polling, no sleep)."""
    deadline = time.monotonic() + timeout_s
    fd = proc.stderr.fileno()
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536).decode()  # unbuffered: select sees what is left
            seen += chunk
            if m := re.search(pattern, seen):
                return m
            if not chunk and proc.poll() is not None:
                break
    raise AssertionError(f"{pattern!r} not printed; stderr so far:\n{seen}")


def test_review_command_needs_the_printed_token_off_loopback(recorded) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--host", "0.0.0.0", "--port", "0", "--data", str(recorded)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    try:
        m = read_until(proc, r"pivh-live web: http://\S+:(\d+)/\?token=(\S+)")
        port, token = m.group(1), m.group(2)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/sessions").status_code == 401
        with httpx.Client(base_url=base, follow_redirects=True) as client:
            page = client.get(f"/?token={token}")
            assert page.status_code == 200 and "Recorded sessions" in page.text
            assert str(page.url) == base + "/sessions"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        rest = proc.stderr.read().decode()
        assert token not in rest  # shown once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
