"""What every job's command line shares: path resolution, and one way to end (exit codes, one line).

Exit codes: 0 done; 2 bad input (one line, nothing written at the output path); 1 the
work failed after its retries; 130 interrupted by Ctrl-C (one line saying what was kept
and how to go on). No traceback unless ``--debug``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

from .outputs.paths import is_uri

__all__ = ["absolute_paths", "run_job", "in_submitted_job", "stop_on_sigterm"]

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
PROGRESS_SECONDS = 5.0  # a long stage prints at most one progress line this often

_terminated = False  # whether the interruption the job is handling came from SIGTERM


def _on_sigterm(signum, frame):
    global _terminated
    _terminated = True
    raise KeyboardInterrupt  # the job's Ctrl-C path: it says what it kept and cleans up what it wrote


def stop_on_sigterm() -> None:
    """Handle SIGTERM (``ray job stop``, Kubernetes, ``kill``) like Ctrl-C. Called as a job starts
    and again once Ray is initialised: Ray's core worker installs a handler of its own that dumps
    a C++ stack and exits without a word from the job."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


ENGINE_HELP = ("where the work runs: ray (join or start a cluster), local (this process, no Ray), or auto "
               "(default): Ray unless the job would start its own cluster on this machine for one CPU "
               "worker over at most 100M feature values")


def in_submitted_job() -> bool:
    """Whether this process is the driver of a ``ray job submit`` job (Ray sets this for it)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def absolute_paths(args, inputs: tuple = (), outputs: tuple = ()) -> None:
    """Make the local paths among ``args``' flags absolute, in place, before any work.

    Relative paths resolve against the directory the command was started in, so the model
    records where its data really is. A job submitted with ``ray job submit`` runs in a
    directory on the cluster (with ``--working-dir``, Ray's temporary copy of it, deleted
    with the session): a relative *output* there would land somewhere the user never looks,
    so it is refused; relative inputs resolve against that directory (files shipped with
    ``--working-dir`` are found).
    """
    for name in (*inputs, *outputs):
        value = getattr(args, name, None)
        if not value or is_uri(value) or value.startswith("builtin:"):
            continue
        flag = "--" + name.replace("_", "-")
        if not os.path.isabs(os.path.expanduser(value)) and name in outputs and in_submitted_job():
            raise ValueError(f"{flag} {value} is a relative path in a job run by `ray job submit`; it would be "
                             f"written under {os.getcwd()} on the cluster: give an absolute path, e.g. "
                             f"{flag} $PWD/{value}")
        path = os.path.abspath(os.path.expanduser(value))
        relative = not os.path.isabs(os.path.expanduser(value))
        if relative and name in inputs and in_submitted_job() and not os.path.exists(path.split("*")[0]):
            raise ValueError(f"{flag} {value} is a relative path in a job run by `ray job submit`: it resolves "
                             f"against {os.getcwd()} on the cluster, where it does not exist; give an absolute "
                             f"path, e.g. {flag} $PWD/{value}")
        setattr(args, name, path)


def run_job(work, debug: bool = False) -> int:
    """Run ``work()`` (which prints its own summary) and turn its ending into an exit code."""
    from .outputs import Interrupted
    from .threads import configure_threads

    stop_on_sigterm()
    try:
        configure_threads()
        work()
        return 0
    except ValueError as e:  # bad input, found before anything was written
        return _fail(EXIT_BAD_INPUT, f"error: {e}", debug)
    except Interrupted as e:  # its message starts "interrupted while ..." and says what was kept
        return _interrupted(str(e), debug)
    except KeyboardInterrupt:
        return _interrupted("interrupted: nothing was published; re-run the same command", debug)
    except Exception as e:  # noqa: BLE001 - the work failed after its retries
        first = str(e).splitlines()[0] if str(e) else ""
        return _fail(EXIT_FAILED, f"error: failed: {type(e).__name__}: {first}", debug)
    finally:
        _stop_ray()


def _interrupted(line: str, debug: bool) -> int:
    if _terminated:
        return _fail(EXIT_TERMINATED, "stopped (SIGTERM): " + line, debug)
    return _fail(EXIT_INTERRUPTED, line, debug)


def _fail(code: int, line: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(line, file=sys.stderr, flush=True)
    return code


def _stop_ray() -> None:
    """Disconnect from Ray if the job connected (an embedded cluster it started stops with it);
    a connection the caller made before the job is left alone."""
    dataset = sys.modules.get("ray_ncut.ray.dataset")
    if dataset is not None and dataset.connected_by_job():
        try:
            dataset.disconnect()
        except BaseException:  # noqa: BLE001 - a second Ctrl-C during shutdown: leave quietly
            pass
