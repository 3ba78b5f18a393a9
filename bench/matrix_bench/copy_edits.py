"""The edits a step makes to the workspace copy, each undone afterwards: matrix.yaml edits (a ruamel round
trip that keeps comments, order and quotes) followed by `generate`, and a comment appended to a source
file (a new digest for Bazel, the same code)."""

from __future__ import annotations

import contextlib
import difflib
import io
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def matrix_cli(workspace: Path, python: str, env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess:
    """`matrix --workspace <workspace> <args>` with the workspace's own CLI; never raises on a non-zero exit."""
    return subprocess.run([python, str(workspace / "tools/matrix/cli.py"), "--workspace", str(workspace), *args],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


class MatrixEdit:
    """Edit the copy's matrix.yaml, regenerate, and restore every file afterwards (even on errors)."""

    def __init__(self, workspace: Path, python: str, env: dict[str, str]):
        from tools.matrix import config, generate

        self.workspace, self.python, self.env = workspace, python, env
        matrix = config.load(workspace / "matrix.yaml", workspace)
        paths = ["matrix.yaml", *generate.render(matrix)]
        self.saved = {p: (workspace / p).read_bytes() for p in paths if (workspace / p).exists()}
        self.diff = ""

    def __enter__(self) -> MatrixEdit:
        return self

    def change(self, edit) -> list[str]:
        """Apply edit(doc) to matrix.yaml (ruamel round trip: comments and order kept), regenerate
        with the CLI; return the generated files that changed."""
        path = self.workspace / "matrix.yaml"
        old = path.read_text()
        new = edit_yaml(old, edit)
        path.write_text(new)
        self.diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/matrix.yaml", "b/matrix.yaml"))
        return regenerate(self.workspace, self.python, self.env)

    def __exit__(self, *exc: Any) -> None:
        for p, data in self.saved.items():
            target = self.workspace / p
            if not target.exists() or target.read_bytes() != data:
                target.write_bytes(data)


def regenerate(workspace: Path, python: str, env: dict[str, str]) -> list[str]:
    """`generate` with the workspace's CLI; the generated files it changed."""
    out = matrix_cli(workspace, python, env, "generate", timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"generate failed (exit {out.returncode}):\n{out.stdout}{out.stderr}")
    m = re.search(r"wrote \d+ file\(s\): (.*)", out.stdout)
    return m.group(1).split(", ") if m else []


@contextlib.contextmanager
def appended_comment(path: Path, text: str = "bench_matrix: a change Bazel must notice"):
    """`path` with one comment line appended (a new digest, the same code); restored afterwards."""
    saved = path.read_bytes()
    path.write_bytes(saved + (b"" if saved.endswith(b"\n") or not saved else b"\n") + f"# {text}\n".encode())
    try:
        yield
    finally:
        path.write_bytes(saved)


def impl_module_path(impl: str, workspace: Path) -> str | None:
    """The workspace-relative file of a variant's impl (`pkg.mod:Class` -> `pkg/mod.py`), as generate finds it."""
    from tools.matrix.variant_library import module_file

    return module_file(impl.split(":", 1)[0], workspace)


def set_granularity(suite: str, granularity: str):
    def edit(doc: Any) -> None:
        if suite not in (doc.get("suites") or {}):
            raise ValueError(f"matrix.yaml has no suite {suite!r}")
        doc["suites"][suite]["granularity"] = granularity

    return edit


def edit_yaml(text: str, edit: Callable[[Any], None]) -> str:
    """`text` after edit(doc) on its ruamel round trip: comments, order and quotes kept."""
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    doc = y.load(text)
    edit(doc)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def _block(node: Any) -> Any:
    with contextlib.suppress(AttributeError):
        node.fa.set_block_style()  # `expectations: {}` is a flow mapping: grow it as a block
    return node


def _child(parent: Any, key: str) -> Any:
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(parent.get(key), dict):
        parent[key] = CommentedMap()
    return _block(parent[key])


def add_entry(suite: str, variant: str, kind: str, nodeid: str, reason: str):
    def edit(doc: Any) -> None:
        _child(_child(_child(_block(doc), "expectations"), suite), variant)
        _child(doc["expectations"][suite][variant], kind)[nodeid] = reason

    return edit


def remove_entry(suite: str, variant: str, device: str, nodeid: str):
    def edit(doc: Any) -> None:
        spec = doc["expectations"][suite][variant]
        for holder in (spec, spec.get("devices", {}).get(device, {})):
            if nodeid in (holder.get("xfail") or {}):
                del holder["xfail"][nodeid]
                if not holder["xfail"]:
                    del holder["xfail"]
                break
        # drop what became empty, innermost first
        if spec.get("devices", {}).get(device) == {}:
            del spec["devices"][device]
        if spec.get("devices") == {}:
            del spec["devices"]
        if not spec:
            del doc["expectations"][suite][variant]
        if not doc["expectations"][suite]:
            del doc["expectations"][suite]

    return edit
