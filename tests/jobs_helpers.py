"""Running the jobs as real processes, and finding and killing the processes they start.

Shared by the job-safety and reliability tests. Faults are injected from outside: a
signal to the job's process group, or SIGKILL to a Ray worker found by its process title.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
RAY_BIN = os.path.join(os.path.dirname(sys.executable), "ray")

# Ray's process titles of the workers the jobs start (as `ps` shows them)
LABEL_ACTOR = "MapBatches(UnitAssignActor)"
TRAIN_WORKER = "ray::RayTrainWorker"


def job(name, args, env=None, cwd=None, timeout=300):
    """Run ``jobs/<name>`` to the end; returns the CompletedProcess."""
    return subprocess.run([sys.executable, str(ROOT / "jobs" / name), *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)


def start_job(name, args, cwd=None, env=None):
    """A job in its own process group, as a terminal runs it (Ctrl-C reaches the whole group)."""
    return subprocess.Popen([sys.executable, str(ROOT / "jobs" / name), *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)


def _default_sigint():
    # A shell without job control starts background commands with SIGINT ignored, and Python
    # keeps an inherited SIG_IGN: the suite run as `cmd &` would then test nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, proc, timeout=180):
    """Poll ``predicate`` until it is true; fails if ``proc`` ends first or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    raise AssertionError("timed out")


def ray_workers():
    """pid -> title of the Ray worker processes that run something (idle ones are pooled)."""
    found = {}
    for p in psutil.process_iter(["name", "cmdline"]):
        name = p.info["name"] or ""
        if name.startswith("ray::") and name != "ray::IDLE":
            found[p.pid] = " ".join(p.info["cmdline"] or []) or name
    return found


def kill_worker(title: str, proc, timeout=120) -> int:
    """SIGKILL one Ray worker process whose title contains ``title``, as the OOM killer would;
    waits for one to exist (``proc``, the job, must still run). Returns its pid."""
    found = []
    wait_for(lambda: found.extend(pid for pid, t in ray_workers().items() if title in t) or found, proc, timeout)
    os.kill(found[0], signal.SIGKILL)
    return found[0]


def survivors(started, grace=30):
    """Names of the processes in ``started`` still alive after ``grace`` seconds."""
    deadline = time.time() + grace
    while time.time() < deadline:
        alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.5)
    return [p.name() for p in alive]


def stop_process_group(proc, grace: float = 1.0) -> None:
    """Stop a test head started in its own session: SIGTERM, then after ``grace`` seconds SIGKILL
    to what is left of its group (a test head needs no orderly shutdown; `ray start --block` takes
    ~30 s for one)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forget_address(gcs_port: int) -> None:
    """Remove Ray's record of this head as the machine's latest cluster, as `ray stop` would,
    so that a later plain ``ray.init()`` on this machine does not try the dead address."""
    from ray._private.utils import get_ray_address_file

    record = get_ray_address_file(None)
    try:
        with open(record) as f:
            ours = f.read().strip().endswith(f":{gcs_port}")
        if ours:
            os.remove(record)
    except FileNotFoundError:
        pass


# Appended to a *copy* of a report: counts the images the browser decoded once the page loaded.
_RENDER_CHECK = ("<script>window.addEventListener('load', () => { const imgs = [...document.images]; "
                 "const shown = s => [...document.querySelectorAll(s)].filter(e => e.offsetWidth > 0 && "
                 "e.textContent.trim()).length; "
                 "document.title = 'rendered ' + imgs.filter(i => i.complete && i.naturalWidth > 0).length + "
                 "'/' + imgs.length + ' legend ' + shown('.legend li') + ' counts ' + shown('td.count'); });</script>")


def rendered_report(report: Path, tmp: Path) -> dict:
    """What of an HTML report headless Chromium rendered: ``images`` (rendered, in the page),
    ``legend`` (visible legend entries), ``counts`` (visible confusion-matrix cells with a count);
    also saves ``tmp/screenshot.png`` of the page."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    page = tmp / "checked.html"
    page.write_text(report.read_text() + _RENDER_CHECK)
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    subprocess.run([*flags, f"--screenshot={tmp / 'screenshot.png'}", "--window-size=800,3000", report.as_uri()],
                   capture_output=True, timeout=120)
    found = re.search(r"<title>rendered (\d+)/(\d+) legend (\d+) counts (\d+)</title>", dom)
    assert found, f"the page did not finish loading in Chromium: {dom[:300]!r}"
    rendered, images, legend, counts = map(int, found.groups())
    return {"images": (rendered, images), "legend": legend, "counts": counts}
