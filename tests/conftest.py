"""One local Ray cluster per test session, started as a head node so that tests can
also submit jobs to it with `ray job submit`. Only tests that ask for it start it."""

import os
import socket
import subprocess
import sys
import time

import pytest

from jobs_helpers import forget_address, stop_process_group

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local test cluster only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The object-storage tests (test_storage.py) start a moto S3 server at this address. It is set
# for the whole session, before any Ray head starts, so that the head's workers reach it too;
# never a real account's endpoint or credentials.
os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{_free_port()}", AWS_ACCESS_KEY_ID="testing",
                  AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)


def _ray_cli(*args, **kw):
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    return subprocess.run([ray_bin, *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A 2-CPU head started for this session: ``{"gcs", "dashboard", "pid"}`` (pid: its ``ray start``
    process, whose descendants are the cluster's processes)."""
    import ray

    gcs_port, dash_port = _free_port(), _free_port()
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    # --block in a session of its own, so that teardown stops this head's processes only:
    # `ray stop` would stop every Ray cluster on the machine, a user's or another run's too.
    log = open(tmp_path_factory.mktemp("ray_head") / "ray_start.log", "w+")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0", f"--port={gcs_port}",
         "--include-dashboard=true", f"--dashboard-port={dash_port}", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"127.0.0.1:{gcs_port}"
    deadline = time.time() + 120
    while _ray_cli("status", f"--address={address}", timeout=60).returncode != 0:
        assert head.poll() is None, f"the test head did not start: {log.seek(0) or log.read()[-2000:]}"
        assert time.time() < deadline, "the test head did not start within 120 s"
        time.sleep(1)
    os.environ["RAY_ADDRESS"] = address  # jobs run in-process by tests join this cluster
    ray.init(address=address, logging_level="WARNING")
    yield {"gcs": address, "dashboard": f"http://127.0.0.1:{dash_port}", "pid": head.pid}
    ray.shutdown()
    os.environ.pop("RAY_ADDRESS", None)
    stop_process_group(head)
    log.close()
    forget_address(gcs_port)
