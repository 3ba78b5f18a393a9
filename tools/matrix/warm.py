"""`warm start|stop|status`: the warm start's launcher (runtime/warm_launcher.py) from the command line.

`report` and `rerun` start the launcher themselves (`prepare`), unless `--cold` (or MATRIX_WARM=off
in their environment) asks every test process to start cold: then they pass
`--test_env=MATRIX_WARM=off` to Bazel, which cell_main obeys whatever launcher runs. A plain
`bazel test` starts warm when a launcher runs (`warm start`), cold otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tools.matrix.runtime import warm_key, warm_start

COLD_ARG = f"--test_env={warm_start.WARM_ENV}=off"
START_S = 30.0  # for a new launcher to answer


def launcher_status(directory: Path) -> dict | None:
    """The running launcher's status answer, None when none answers."""
    try:
        sock, answer = warm_start.ask(directory / warm_start.LAUNCHER_SOCKET, {"op": "status"}, 5.0)
    except (OSError, warm_start.WarmUnavailable):
        return None
    sock.close()
    return answer


def _ours(status: dict) -> bool:
    """Whether a running launcher is this runtime's, with this interpreter."""
    return status.get("runtime") == warm_key.runtime_digest() and status.get("python") == sys.executable


def stop() -> str:
    directory = warm_start.state_dir()
    status = launcher_status(directory)
    if status is None:
        return "no warm launcher is running"
    warm_start.ask(directory / warm_start.LAUNCHER_SOCKET, {"op": "stop"}, 30.0)[0].close()
    deadline = time.monotonic() + 30
    while (directory / warm_start.LAUNCHER_SOCKET).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return f"stopped the warm launcher (pid {status['pid']}) and its {len(status['zygotes'])} zygote(s)"


def start() -> str:
    """Make sure this runtime's launcher runs (restarting one of another runtime); what was done, in words."""
    directory = warm_start.state_dir()
    directory.mkdir(mode=0o700, exist_ok=True)
    warm_start.checked_state_dir()
    status = launcher_status(directory)
    if status is not None and _ours(status):
        return f"the warm launcher runs (pid {status['pid']}, {len(status['zygotes'])} zygote(s))"
    restarted = ""
    if status is not None:
        restarted = f"{stop()} (it was started from another runtime or Python environment); "
    (directory / warm_start.LAUNCHER_SOCKET).unlink(missing_ok=True)  # a dead launcher's
    root = Path(__file__).resolve().parents[2]  # where `tools` is importable from
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNFILES_", "PYTHON", "BUILD_", "TEST_"))}
    with open(directory / "launcher.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "tools.matrix.runtime.warm_launcher"], cwd=root, env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        status = launcher_status(directory)
        if status is not None:
            return f"{restarted}started the warm launcher (pid {status['pid']})"
        time.sleep(0.1)
    raise warm_start.WarmUnavailable(f"the warm launcher did not answer within {START_S:g}s; see {directory / 'launcher.log'}")


def status() -> str:
    directory = warm_start.state_dir()
    found = launcher_status(directory)
    if found is None:
        return "no warm launcher is running"
    lines = [f"warm launcher pid {found['pid']} ({'this runtime' if _ours(found) else 'another runtime'}), {directory}"]
    lines += [f"  zygote {z['key']}: pid {z['pid']}, {z['rss'] >> 20} MiB" for z in found["zygotes"]]
    return "\n".join(lines)


def prepare(bazel_args: list[str], cold: bool) -> list[str]:
    """Before `bazel test`: start the launcher, or (cold) tell the tests to start cold. The Bazel arguments to use."""
    why_cold = "--cold" if cold else warm_start.disabled(dict(os.environ))
    if why_cold:
        print(f"warm start: off ({why_cold}): every test process starts cold", flush=True)
        return [*bazel_args, COLD_ARG]
    if os.environ.get(warm_start.DIR_ENV):  # another state directory (a drill's): the tests must look there too
        bazel_args = [*bazel_args, f"--test_env={warm_start.DIR_ENV}={os.environ[warm_start.DIR_ENV]}"]
    try:
        print(f"warm start: {start()} (`--cold` to start every test process cold)", flush=True)
    except (OSError, warm_start.WarmUnavailable) as e:
        print(f"warm start: unavailable ({e}); the test processes start cold", flush=True)
    return bazel_args
