"""One local Ray cluster per test session, started as a head node so that tests can
also submit jobs to it with `ray job submit`. Only tests that ask for it start it."""

import os
import socket
import subprocess
import sys
import time

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local test cluster only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli(*args, **kw):
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    return subprocess.run([ray_bin, *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def ray_cluster():
    """Address info of a 2-CPU head started for this session: ``{"gcs", "dashboard"}``."""
    import ray

    gcs_port, dash_port = _free_port(), _free_port()
    started = _ray_cli(
        "start", "--head", "--num-cpus=2", "--num-gpus=0", f"--port={gcs_port}",
        "--include-dashboard=true", f"--dashboard-port={dash_port}", "--disable-usage-stats",
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    address = f"127.0.0.1:{gcs_port}"
    os.environ["RAY_ADDRESS"] = address  # jobs run in-process by tests join this cluster
    ray.init(address=address, logging_level="WARNING")
    yield {"gcs": address, "dashboard": f"http://127.0.0.1:{dash_port}"}
    ray.shutdown()
    os.environ.pop("RAY_ADDRESS", None)
    _ray_cli("stop", "--force", timeout=60)
    time.sleep(1)
