"""What `make run` records under var/ is trusted only while that `make run` lives."""

import socket
import stat
import subprocess
import sys

from config import devrecord


def test_a_recorded_redis_is_used_while_its_make_run_lives(tmp_path):
    with socket.socket() as server:  # something answers on the recorded port
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
        devrecord.record(tmp_path, redis_url=url, web_url="http://127.0.0.1:8123")
        assert devrecord.development_redis_url(tmp_path) == url
        assert devrecord.development_web_url(tmp_path, 8000) == "http://127.0.0.1:8123"
        assert stat.S_IMODE((tmp_path / "redis" / "url").stat().st_mode) == 0o600


def test_a_record_left_by_a_killed_make_run_is_ignored_even_if_its_port_answers_again(tmp_path, capsys):
    with socket.socket() as server:  # another program took the port since
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        devrecord.record(tmp_path, redis_url=url, web_url="http://127.0.0.1:8123", pid=dead.pid)
        assert devrecord.development_redis_url(tmp_path) == devrecord.NO_REDIS_URL
        assert "was killed" in capsys.readouterr().err
        assert devrecord.development_web_url(tmp_path, 8000) == "http://127.0.0.1:8000"
