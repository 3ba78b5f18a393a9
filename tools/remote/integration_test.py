"""Remote execution and remote caching, end to end, on 127.0.0.1 only, in a workspace a user builds.

    tools/remote/setup.sh                        # once per machine: the only step that downloads
    bazel run //tools/remote:integration_test

The workspace (tools/scratch_workspace.py: this checkout's tools/, WORKSPACE, ...) gets the suite
tiny_suite/, a matrix.yaml written here, and the plug-in variant `mine` exactly as README.md's recipe
("Adding a variant") writes it: my_project/variants.py, taken from the README, with no BUILD file in
my_project/. The real CLI's `generate` writes the BUILD files, then `bazel test` runs the five cells
(base, retrace, serdes, run_decomp, mine):

1. BuildGrid (its scheduler on a PostgreSQL of its own) with two workers (bot.py): --config=remote;
   every test must run remotely, spread over both workers, the plug-in's cell on one of them.
2. A second, empty output base runs them with --config=remote: every test is a cache hit.
3. nginx (WebDAV PUT) as a plain HTTP cache: the cells run locally with --config=cache, then a
   second, empty output base gets every test as a remote cache hit.
4. A comment appended to my_project/variants.py: a --config=cache rerun executes the `mine` cell
   and no other (the plug-in's library is a dependency of exactly its cells).
The plug-in's cell must pass each time, its report saying variant `mine` transformed every test's
export. Addresses reach Bazel the way a user's would: `build:cache`/`build:remote` lines in the
workspace's user.bazelrc. Everything lives in one temporary directory and is stopped (and removed)
at the end.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import NoReturn

from tools.scratch_workspace import nested_env, project_pyenv, scratch_workspace

HERE = Path(__file__).resolve().parent  # tools/remote in the runfiles (or the source tree)
BUILDGRID_VENV = Path(os.environ.get("BUILDGRID_VENV", "/opt/buildgrid/venv"))
INSTANCE = "torch-matrix"
IMAGE = "docker://torch-matrix-worker:local"  # the container-image property jobs and workers match on
WORKERS = 2
BAZEL_TIMEOUT_S = 900  # per nested bazel command: bounds the whole test
SETUP_HINT = "run tools/remote/setup.sh first (it installs the test's prerequisites)"

SUITE = "tiny_suite"  # tools/remote/tiny_suite: two tests of torch.export (a real suite takes minutes)
PLUGIN = "mine"
TESTS = ("test_tiny_export.py::test_add_mul", "test_tiny_export.py::test_linear_relu")
TARGETS = [f"//{SUITE}:{SUITE}_{v}_cpu" for v in ("base", "retrace", "serdes", "run_decomp", PLUGIN)]
PLUGIN_TARGET = TARGETS[-1]
RECIPE_FILE = "my_project/variants.py"  # the path README.md's recipe gives its plug-in

MATRIX_YAML = f"""\
# The remote integration test's matrix (written by tools/remote/integration_test.py).
devices:
  cpu: {{}}
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: The API untouched.
  retrace:
    impl: tools.matrix.variants.export:Retrace
    description: Export the exported program's .module() again.
    applies_to: [torch.export.export]
  serdes:
    impl: tools.matrix.variants.export:Serdes
    description: torch.export.save / torch.export.load round trip.
    applies_to: [torch.export.export]
  run_decomp:
    impl: tools.matrix.variants.export:RunDecomp
    description: Return ep.run_decompositions() (core ATen).
    applies_to: [torch.export.export]
  {PLUGIN}:
    impl: my_project.variants:MyVariant
    description: save/load through a buffer (README.md, "Adding a variant").
suites:
  {SUITE}:
    variants: [base, retrace, serdes, run_decomp, {PLUGIN}]
    devices: [cpu]
    size: medium
    test_timeout_s: 60
"""


def fail(message: str) -> NoReturn:
    print(f"integration_test: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"{what} exited with {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.3)
    fail(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s}s; see {log}")


class Services(contextlib.ExitStack):
    """Starts processes and stops them, last started first, when the test ends (or fails)."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = root

    def start(self, name: str, cmd: list[str], stop_signal: int = signal.SIGTERM) -> tuple[subprocess.Popen, Path]:
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root)
        self.callback(self._stop, proc, stop_signal)
        return proc, log

    @staticmethod
    def _stop(proc: subprocess.Popen, stop_signal: int) -> None:
        if proc.poll() is None:
            proc.send_signal(stop_signal)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def start_postgres(services: Services) -> str:
    """A throwaway cluster for BuildGrid's scheduler; returns its connection string."""
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bindirs:
        fail(f"no PostgreSQL under /usr/lib/postgresql; {SETUP_HINT}")
    bindir, data, port = Path(bindirs[-1]), services.root / "pg", free_port()
    data.mkdir()
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use Debian's postgres user
        shutil.chown(data, "postgres", "postgres")
        as_owner = [shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser", "-u", "postgres", "--"]
    subprocess.run(
        as_owner + [str(bindir / "initdb"), "-D", str(data), "-U", "bgd", "--auth=trust", "--no-sync"],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=data,  # its user cannot enter this process's directory (the runfiles, below /root)
    )
    server = [*as_owner, str(bindir / "postgres"), "-D", str(data), "-k", str(data), "-c", "fsync=off"]
    proc, log = services.start(
        "postgres",
        [*server, "-h", "127.0.0.1", "-p", str(port)],
        stop_signal=signal.SIGINT,  # "fast" shutdown: do not wait for BuildGrid's pooled connections
    )
    wait_for_port(port, proc, "postgres", log)
    createdb = [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "bgd", "bgd"]
    for _ in range(50):  # accepting TCP is not yet accepting sessions
        if subprocess.run(createdb, check=False, stderr=subprocess.DEVNULL).returncode == 0:
            return f"postgresql://bgd@127.0.0.1:{port}/bgd"
        time.sleep(0.2)
    fail(f"could not create BuildGrid's database; see {log}")


def start_buildgrid(services: Services) -> int:
    bgd = BUILDGRID_VENV / "bin" / "bgd"
    if not bgd.exists():
        fail(f"no BuildGrid at {bgd}; {SETUP_HINT}")
    sql, port = start_postgres(services), free_port()
    subprocess.run([str(bgd), "migrate", "apply", sql], check=True, stdout=subprocess.DEVNULL)
    config = services.root / "buildgrid.yml"
    template = string.Template((HERE / "buildgrid.yml").read_text())
    config.write_text(template.substitute(port=port, sql=sql, cas_dir=services.root / "cas"))
    proc, log = services.start("buildgrid", [str(bgd), "server", "start", str(config)])
    wait_for_port(port, proc, "BuildGrid", log)
    for n in range(1, WORKERS + 1):
        services.start(
            f"worker-{n}",
            [
                str(BUILDGRID_VENV / "bin" / "python"),
                str(HERE / "bot.py"),
                f"--remote=http://127.0.0.1:{port}",
                f"--instance={INSTANCE}",
                f"--name=worker-{n}",
                "--property=OSFamily=Linux",
                f"--property=container-image={IMAGE}",
                f"--scratch={services.root / f'worker-{n}'}",
                f"--log={services.root / 'workers.jsonl'}",
            ],
        )
    return port


def start_nginx(services: Services) -> int:
    """nginx as a plain HTTP cache: Bazel GETs and PUTs /ac/<hash> and /cas/<hash>."""
    if not Path("/usr/sbin/nginx").exists():
        fail(f"no /usr/sbin/nginx; {SETUP_HINT}")
    root, port = services.root / "nginx", free_port()
    (root / "cache").mkdir(parents=True)
    temp = " ".join(f"{kind}_temp_path {root}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (root / "nginx.conf").write_text(f"""
        daemon off;
        user {pwd.getpwuid(os.geteuid()).pw_name};
        pid {root}/nginx.pid;
        events {{}}
        http {{
            access_log {root}/access.log;
            {temp}
            server {{
                listen 127.0.0.1:{port};
                root {root}/cache;
                client_max_body_size 0;
                location / {{ dav_methods PUT; create_full_put_path on; }}
            }}
        }}
    """)
    proc, log = services.start(
        "nginx",
        ["/usr/sbin/nginx", "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")],
        stop_signal=signal.SIGQUIT,
    )
    wait_for_port(port, proc, "nginx", log)
    return port


def client_pyenv() -> Path:
    """This test's own @pyenv repository: the nested builds reuse it, so nothing is pip-installed
    while the test runs (and the stub and wrapper it generates do not name an output base)."""
    pyenv = project_pyenv()
    frozen = pyenv / "frozen_requirements.txt"
    worker = Path("/opt/torch-matrix/frozen_requirements.txt")
    client = [line for line in frozen.read_text().splitlines() if not line.startswith("#")]
    if not worker.exists() or worker.read_text().splitlines() != client:
        fail(
            f"the worker image /opt/torch-matrix does not match {frozen}; "
            f"{SETUP_HINT}, or tools/remote/install_worker_env.sh {frozen}"
        )
    return pyenv


def readme_plugin(readme: Path) -> str:
    """The plug-in module of README.md's recipe: the python block that starts `# my_project/variants.py`."""
    for block in re.findall(r"^```python\n(.*?)^```", readme.read_text(), re.MULTILINE | re.DOTALL):
        if block.startswith(f"# {RECIPE_FILE}"):
            return block
    fail(f"{readme} has no ```python block starting with `# {RECIPE_FILE}` (the plug-in recipe this test runs)")


def user_workspace(source: Path, root: Path, pyenv: Path) -> Path:
    """The scratch workspace with tiny_suite, the README's plug-in and matrix.yaml; generated BUILD files."""
    plugin = root / "plugin" / Path(RECIPE_FILE).parent.name
    plugin.mkdir(parents=True)
    (plugin / Path(RECIPE_FILE).name).write_text(readme_plugin(source / "README.md"))
    ws = scratch_workspace(source, root / "ws", pyenv, MATRIX_YAML, [HERE / SUITE, plugin])
    generate = [str(pyenv / "venv" / "bin" / "python3"), str(ws / "tools" / "matrix" / "cli.py"), "--workspace", str(ws), "generate"]
    proc = subprocess.run(generate, cwd=ws, env=nested_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        fail(f"`matrix generate` exited with {proc.returncode}:\n{proc.stdout[-3000:]}")
    return ws


class Bazel:
    """Nested `bazel test` runs in the scratch workspace, each in an output base of its own."""

    def __init__(self, services: Services, workspace: Path, targets: list[str]):
        self.services, self.workspace, self.targets = services, workspace, targets
        self.env = nested_env()
        self.started: set[str] = set()

    def test(self, output_base: str, *flags: str, log_name: str = "") -> tuple[str, float]:
        startup = [f"--output_base={self.services.root / output_base}", "--max_idle_secs=600"]
        if output_base not in self.started:
            self.started.add(output_base)
            self.services.callback(
                subprocess.run,
                ["bazel", *startup, "shutdown"],
                cwd=self.workspace,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
            )
        cmd = ["bazel", *startup, "test", *flags, "--", *self.targets]
        print(f"\n$ {' '.join(cmd)}", flush=True)
        started = time.monotonic()
        proc = subprocess.run(
            cmd,
            check=False,
            cwd=self.workspace,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BAZEL_TIMEOUT_S,
        )
        seconds = time.monotonic() - started
        (self.services.root / f"{log_name or output_base}.log").write_text(proc.stdout)
        summary = [
            line for line in proc.stdout.splitlines() if re.match(r"INFO: \d+ processes", line) or line.startswith("//")
        ]
        print("\n".join(summary) + f"\n({seconds:.1f}s)", flush=True)
        if proc.returncode != 0:
            fail(f"bazel exited with {proc.returncode}:\n{proc.stdout[-6000:]}")
        return proc.stdout, seconds


def testlogs(output_base: Path) -> Path:
    return next(output_base.glob("execroot/*/bazel-out/*/testlogs"))


def missing_testlogs(output_base: Path, targets: list[str]) -> list[str]:
    """What the report collector reads (test.xml, outputs.zip) but this output base lacks."""
    wanted = [
        testlogs(output_base) / label[2:].replace(":", "/") / name
        for label in targets
        for name in ("test.xml", "test.outputs/outputs.zip")
    ]
    return [str(path) for path in wanted if not path.exists()]


def processes(output: str, kind: str) -> int:
    """How many of the last build's processes were of `kind` (e.g. "remote", "remote cache hit")."""
    line = [line for line in output.splitlines() if re.match(r"INFO: \d+ processes", line)][-1]
    return sum(int(n) for n, k in re.findall(r"(\d+) ([a-z -]+?)(?:,|\.$)", line) if k == kind)


def executed(output: str) -> list[str]:
    """The targets of the summary whose test ran in this build (not `(cached)`)."""
    return sorted(
        line.split()[0] for line in output.splitlines() if line.startswith("//") and " (cached) " not in line
    )


def plugin_problems(output_base: Path) -> list[str]:
    """What is wrong with the plug-in cell's outputs (in the cell's outputs.zip, which the report reads):
    each test must have passed under variant `mine`, its export transformed by the plug-in."""
    outputs = testlogs(output_base) / PLUGIN_TARGET[2:].replace(":", "/") / "test.outputs" / "outputs.zip"
    with zipfile.ZipFile(outputs) as z:
        digest, report = json.loads(z.read("matrix_results.json")), json.loads(z.read("report.json"))
    cell = digest["matrix"]
    problems = [
        f"matrix_results.json: {key} is {cell.get(key)!r}, expected {want!r}"
        for key, want in (("variant", PLUGIN), ("target", PLUGIN_TARGET))
        if cell.get(key) != want
    ]
    ran = {test["nodeid"]: test["metadata"]["matrix"] for test in report["tests"]}
    if sorted(ran) != sorted(TESTS):
        problems.append(f"report.json: tests {sorted(ran)}, expected {sorted(TESTS)}")
    for nodeid, result in sorted(ran.items()):
        if result["status"] != "passed" or result["transform_calls"] < 1:
            problems.append(f"report.json: {nodeid}: {result['status']} after {result['transform_calls']} transform calls "
                            f"(expected passed, >= 1): {result['message'][:300]}")  # fmt: skip
    return problems


def check_plugin(output_base: Path, when: str) -> None:
    if problems := plugin_problems(output_base):
        fail(f"the plug-in cell {PLUGIN_TARGET} ({when}):\n  " + "\n  ".join(problems))


def main() -> int:
    source = Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or fail("run me with `bazel run`"))
    if sys.argv[1:]:
        fail(f"no arguments: the test runs the cells it generates ({', '.join(TARGETS)})")
    started = time.monotonic()
    pyenv = client_pyenv()
    root = Path(tempfile.mkdtemp(prefix="remote_it_"))
    root.chmod(0o755)  # PostgreSQL's user must reach its data directory below
    print(f"integration_test: working in {root}")
    with Services(root) as services:
        services.callback(shutil.rmtree, root, ignore_errors=True)  # runs last
        services.callback(subprocess.run, ["chmod", "-R", "u+w", str(root)], check=False)  # output bases hold read-only directories
        ws = user_workspace(source, root, pyenv)
        grpc_port, http_port = start_buildgrid(services), start_nginx(services)
        (ws / "user.bazelrc").write_text(  # what a user's user.bazelrc says (docs/remote.md)
            f"build:cache --remote_cache=http://127.0.0.1:{http_port}\n"
            f"build:remote --remote_executor=grpc://127.0.0.1:{grpc_port}\n"
            f"build:remote --remote_instance_name={INSTANCE}\n"
            f"build:remote --remote_default_exec_properties=container-image={IMAGE}\n"
        )
        bazel = Bazel(services, ws, TARGETS)

        out, remote_s = bazel.test("ob_remote", "--config=remote")
        tests = len(re.findall(r"^//\S+ +PASSED", out, re.MULTILINE))
        ran = [json.loads(line) for line in (root / "workers.jsonl").read_text().splitlines()]
        print("\nwhich worker ran which test action:")
        for record in ran:
            print(
                f"  {record['worker']}: {record.get('target')} (exit {record.get('exit_code')}, {record.get('seconds')}s)"
            )
        if tests != len(TARGETS) or processes(out, "remote") != tests:
            fail(f"expected all {len(TARGETS)} test actions to run remotely and pass ({tests} passed)")
        if len({record["worker"] for record in ran}) < 2:
            fail("expected the test actions to be spread over at least two workers")
        if PLUGIN_TARGET not in {record.get("target") for record in ran}:
            fail(f"no worker ran the plug-in cell {PLUGIN_TARGET}")
        check_plugin(root / "ob_remote", "run on a worker")

        out, hits_s = bazel.test("ob_remote_empty", "--config=remote")
        if processes(out, "remote cache hit") != tests:
            fail(f"expected {tests} remote cache hits in an empty output base")
        if missing := missing_testlogs(root / "ob_remote_empty", TARGETS):
            fail(f"cache hits without the collector's inputs: {missing}")
        check_plugin(root / "ob_remote_empty", "a remote cache hit")

        out, local_s = bazel.test("ob_http", "--config=cache")
        if processes(out, "remote cache hit") != 0 or executed(out) != sorted(TARGETS):
            fail("expected the --config=cache run to execute every test locally first")
        check_plugin(root / "ob_http", "run locally")
        out, http_hits_s = bazel.test("ob_http_empty", "--config=cache")
        if processes(out, "remote cache hit") != tests:
            fail(f"expected {tests} HTTP cache hits in an empty output base")
        check_plugin(root / "ob_http_empty", "an HTTP cache hit")

        with open(ws / RECIPE_FILE, "a") as plugin_file:
            plugin_file.write("# edited by the integration test: only the cells of this variant depend on this file\n")
        out, edit_s = bazel.test("ob_http", "--config=cache", log_name="ob_http_edited")
        if executed(out) != [PLUGIN_TARGET]:
            fail(f"after editing {RECIPE_FILE}, expected exactly {PLUGIN_TARGET} to run (the rest cached); ran {executed(out)}")
        check_plugin(root / "ob_http", f"rerun after editing {RECIPE_FILE}")

    print(
        f"\nintegration_test: PASS in {time.monotonic() - started:.0f}s ({tests} tests, the plug-in's among them; "
        f"bazel runs: remote {remote_s:.0f}s, remote cache hits {hits_s:.0f}s, local + HTTP upload {local_s:.0f}s, "
        f"HTTP cache hits {http_hits_s:.0f}s, plug-in edited {edit_s:.0f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
