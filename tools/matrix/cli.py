"""The matrix command line: `bazel run //tools:matrix -- <command> [options]`.

Commands: generate, list, report, rerun, xfail sync, xfail import, durations, history, warm. Never a traceback: a user
error (bad option, bad matrix.yaml, unreadable report, failing bazel) is one clear message and exit
status 2; an interrupt exits 130; an unexpected exception (a bug) is one line naming the file that
holds its traceback, and exit status 70. `report` and `rerun` exit 3 when the report was written and its
tests were as expected but the history store did not take the run (history/append.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script by the py_binary / py_test launcher
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.matrix import bazel, config, durations, generate, last_report, listing, matrix_writer, warm, xfail_sync  # noqa: E402
from tools.matrix.config import did_you_mean  # noqa: E402
from tools.matrix.errors import InvalidRewrite, UserError  # noqa: E402
from tools.matrix.filters import add_filter_options, selected_cells  # noqa: E402
from tools.matrix.report.text import visible  # noqa: E402
from tools.matrix.runtime import warm_start  # noqa: E402

EXIT_USER = 2  # bad input: options, matrix.yaml, the last report, bazel failing
EXIT_INTERRUPTED = 130
EXIT_BUG = 70  # EX_SOFTWARE: an unexpected exception; its traceback is in a file
# (`report` / `rerun` exit 3 when the report was written but the history store did not take the run:
# history/append.EXIT_HISTORY.)
HISTORY_FILE = "history.sqlite"


def workspace_of(args: argparse.Namespace) -> Path:
    if args.workspace:
        return Path(args.workspace).resolve()
    # `bazel run` starts us inside runfiles; Bazel tells us where the user's workspace is.
    return Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or os.getcwd()).resolve()


def load_matrix(args: argparse.Namespace) -> config.Matrix:
    """The valid matrix, shard plans included: a malformed test_durations.json is an error here."""
    matrix = load_matrix_to_replan(args)
    if matrix.plan_problems:
        raise config.MatrixError(list(matrix.plan_problems))
    return matrix


def load_matrix_to_replan(args: argparse.Namespace) -> config.Matrix:
    """The matrix, a malformed test_durations.json read as nothing recorded: for `durations`, which rewrites it."""
    workspace = workspace_of(args)
    return config.load(workspace / args.matrix, workspace, packages_visible=not getattr(args, "runfiles", False))


def out_dir_of(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    return out if out.is_absolute() else workspace_of(args) / out


def history_of(args: argparse.Namespace, matrix: config.Matrix | None = None) -> str | None:
    """The history store `--history` names, else matrix.yaml's `history`: a postgresql:// URL, a file
    (relative to the workspace), or none; default: history.sqlite in the report directory."""
    from tools.matrix.history.store import is_url

    given = args.history if args.history is not None else (matrix.history if matrix is not None and matrix.history else None)
    if given is None:
        return str(out_dir_of(args) / HISTORY_FILE)
    if given == "none" or is_url(given):
        return None if given == "none" else given
    path = Path(given)
    return str(path if path.is_absolute() else workspace_of(args) / path)


def cmd_history(args: argparse.Namespace) -> int:
    from tools.matrix.history import commands

    # matrix.yaml's `history` when there is a matrix.yaml (the history is readable without one)
    has_matrix = args.history is None and (workspace_of(args) / getattr(args, "matrix", "matrix.yaml")).exists()
    location = history_of(args, load_matrix(args) if has_matrix else None)
    if location is None:
        raise UserError("history: --history none names no store")
    return commands.run(location, args)


def cmd_generate(args: argparse.Namespace) -> int:
    matrix = load_matrix(args)
    workspace = workspace_of(args)
    if args.check:
        diff = generate.check(matrix, workspace)
        if diff:
            sys.stdout.write(diff)
            print(f"\nerror: generated BUILD files are stale; run `{generate.REGENERATE}`", file=sys.stderr)
            return 1
        print(f"generated files are up to date ({len(generate.render(matrix))} files)")
        return 0
    changed = generate.write(matrix, workspace)
    print(f"wrote {len(changed)} file(s): {', '.join(changed)}" if changed else "generated files already up to date")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print(listing.table(selected_cells(load_matrix(args), args)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tools.matrix import run_report

    baseline = Path(args.baseline).resolve() if args.baseline is not None else None
    if baseline is not None:
        if not baseline.is_file():  # a directory, a FIFO (reading it would wait forever), /dev/zero, "" (the cwd)
            raise UserError(f"--baseline {args.baseline!r}: {'not a regular file' if baseline.exists() else 'no such file'}; give a compat.json")
        last_report.load(baseline)  # a bad baseline is found now, not after the whole matrix ran
    matrix = load_matrix(args)
    bazel_args = args.bazel_args if args.no_run else warm.prepare(args.bazel_args, args.cold)
    return run_report.report(workspace_of(args), matrix, out_dir_of(args), baseline, bazel_args, not args.no_run, history_of(args, matrix), args.strict_flaky)


def cmd_rerun(args: argparse.Namespace) -> int:
    from tools.matrix import rerun

    matrix = load_matrix(args)
    return rerun.rerun(workspace_of(args), matrix, out_dir_of(args), args, history_of(args, matrix))


def cmd_warm(args: argparse.Namespace) -> int:
    try:
        print({"start": warm.start, "stop": warm.stop, "status": warm.status}[args.action]())
    except warm_start.WarmUnavailable as e:
        raise UserError(f"warm {args.action}: {e}") from None
    return 0


def cmd_xfail_sync(args: argparse.Namespace) -> int:
    from tools.matrix.report import COMPAT_JSON

    records = last_report.load(out_dir_of(args) / COMPAT_JSON)[1]
    matrix = load_matrix(args)  # refuse to edit an invalid matrix.yaml
    selected_cells(matrix, args)  # a filter naming nothing is an error, not "already match"
    edits = xfail_sync.sync(workspace_of(args) / args.matrix, records, args, matrix, warn=lambda line: print(line, file=sys.stderr), workspace=workspace_of(args))
    if not edits:
        print("matrix.yaml expectations already match the last report")
        return 0
    return write_expectations(args, edits)


def cmd_xfail_import(args: argparse.Namespace) -> int:
    from tools.matrix import xfail_import
    from tools.matrix.report import COMPAT_JSON

    matrix = load_matrix(args)
    suite = xfail_import.suite_and_variant(matrix, args.suite, args.variant)
    probe = xfail_import.probe(workspace_of(args), suite, args.marker)
    if not probe.found:
        raise UserError(
            f"--marker {args.marker}: none of the {len(probe.collected)} test(s) collected in suite {suite.name!r} carries it; "
            + did_you_mean(args.marker, probe.seen).replace("valid: ", "markers seen: ")
        )
    additions, listed = xfail_import.plan(matrix, suite.name, args.variant, probe)
    print(f"{len(probe.found)} of {len(probe.collected)} test(s) in {suite.name} carry {args.marker}; {len(listed)} already listed for {args.variant}")
    if not additions:
        print("nothing to import")
        return 0
    for line in xfail_import.base_failures(out_dir_of(args) / COMPAT_JSON, suite.name, args.variant, [entry for *_, entry, _ in additions]):
        print(line, file=sys.stderr)
    edits = matrix_writer.edit_expectations(workspace_of(args), workspace_of(args) / args.matrix, matrix,
                                            lambda expectations: [matrix_writer.add_xfail(expectations, *a) for a in additions])  # fmt: skip
    return write_expectations(args, edits)


def write_expectations(args: argparse.Namespace, edits: list[matrix_writer.Edit]) -> int:
    """Show the diffs, then (unless --dry-run) write the validated files and regenerate."""
    for e in edits:
        sys.stdout.write(matrix_writer.diff(e.old, e.new, e.display))
    workspace = workspace_of(args)
    if args.dry_run:
        matrix_path = workspace / args.matrix
        new = next((e.new for e in edits if e.path == matrix_path), matrix_path.read_text())
        matrix_writer.validate(new, matrix_path, workspace, {e.display: e.new for e in edits if e.path != matrix_path})
        return 0
    matrix_writer.write_all(edits, workspace / args.matrix, workspace)
    return cmd_generate(argparse.Namespace(**{**vars(args), "check": False}))


def cmd_durations(args: argparse.Namespace) -> int:
    """Record the last report's test durations for the suites sharded by shard_seconds, then
    regenerate: their targets get new shard counts and shard plans."""
    from tools.matrix.report import COMPAT_JSON

    records = last_report.load(out_dir_of(args) / COMPAT_JSON)[1]
    # A malformed test_durations.json (say, a merge conflict) must not stop the command that rewrites it.
    matrix = load_matrix_to_replan(args)
    workspace = workspace_of(args)
    sharded = [s for s in matrix.suites if s.shard_seconds is not None]
    if not sharded:
        print("no suite in matrix.yaml has shard_seconds; nothing to record")
        return 0
    before = {t.label: t.shard_count for t in matrix.targets()}
    for suite in sharded:
        mine = [r for r in records if r.suite == suite.name]
        if suite.durations_problem:
            print(f"{suite.durations_file}: malformed; recording it anew from the last report alone")
        (workspace / suite.durations_file).write_text(durations.render(durations.update(suite.recorded, mine), suite.name))
    matrix = load_matrix(args)
    for target in matrix.targets():
        if target.cell.suite.shard_seconds is not None:
            seconds = sum(target.recorded_durations.values())
            was = before.get(target.label, target.shard_count)
            change = f"{was} -> {target.shard_count}" if was != target.shard_count else f"{target.shard_count}"
            print(f"{target.label}: {seconds:.0f} s recorded, {change} shard(s)")
    return cmd_generate(argparse.Namespace(**{**vars(args), "check": False}))


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", default=argparse.SUPPRESS, help="workspace root (default: where `bazel run` was called, else the current directory)")
    common.add_argument("--matrix", default=argparse.SUPPRESS, help="matrix file relative to the workspace (default: matrix.yaml)")
    parser = argparse.ArgumentParser(prog="matrix", description=__doc__.split("\n\n")[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{generate,list,report,rerun,xfail,durations,history,warm}")

    gen = sub.add_parser("generate", parents=[common], help="write the suites' BUILD.bazel files from matrix.yaml")
    gen.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff when a file is stale")
    # //:generated_files_test's workspace is its runfiles, which hold no BUILD file of the variants'
    # packages: their labels are taken as written (Bazel checks them when it loads the cells).
    gen.add_argument("--runfiles", action="store_true", help=argparse.SUPPRESS)
    gen.set_defaults(func=cmd_generate)

    lst = sub.add_parser("list", parents=[common], help="show the matrix cells (targets, tags, shards, expectations)")
    add_filter_options(lst)
    lst.set_defaults(func=cmd_list)

    def add_out(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default="reports", help="report directory (default: reports/)")
        p.add_argument("--cold", action="store_true", help="start every test process cold (no warm launcher; --test_env=MATRIX_WARM=off)")
        p.add_argument("--history", help=f"the history store this run is appended to: an SQLite file, a postgresql:// URL, or `none` "
                                         f"(default: {HISTORY_FILE} in the report directory); see docs/history.md")  # fmt: skip
        p.add_argument("--strict-flaky", action="store_true", help="exit 1 when a test is flaky (failed, then passed on a retry) too")
        p.add_argument("bazel_args", nargs="*", help="extra bazel arguments, after `--`")

    rep = sub.add_parser("report", parents=[common], help="run the whole matrix (--keep_going) and write the compatibility report")
    rep.add_argument("--baseline", help="an earlier compat.json: report regressions, fixes, new/removed tests, changed xfails")
    rep.add_argument("--no-run", action="store_true", help="only collect what bazel-testlogs already holds")
    add_out(rep)
    rep.set_defaults(func=cmd_report)

    rr = sub.add_parser("rerun", parents=[common], help="rerun matching targets/tests and merge into the last report")
    add_filter_options(rr)
    rr.add_argument("--failed", action="store_true", help="only tests failed/crashed/timed out/errored in the last report")
    rr.add_argument("--xpassed", action="store_true", help="only tests that passed despite an xfail in the last report")
    rr.add_argument("--tests", action="append", default=[], metavar="PATTERN", help="only tests matching (node id, Class.test, glob)")
    rr.add_argument("--dry-run", action="store_true", help="print the bazel command(s) and stop")
    add_out(rr)
    rr.set_defaults(func=cmd_rerun)

    xf = sub.add_parser("xfail", parents=[common], help="expectation maintenance")
    xsub = xf.add_subparsers(dest="xfail_command", required=True)
    sync = xsub.add_parser("sync", parents=[common], help="add new failures as xfails, remove stale xfails (from the last report)")
    add_filter_options(sync)
    sync.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    sync.add_argument("--out", default="reports", help="report directory (default: reports/)")
    sync.set_defaults(func=cmd_xfail_sync, tests=[])
    imp = xsub.add_parser("import", parents=[common], help="turn a suite's expected-failure markers into xfails of one variant")
    imp.add_argument("--suite", required=True, help="the suite to collect (no test runs)")
    imp.add_argument("--variant", required=True, help="the variant the marked tests are expected to fail under")
    imp.add_argument(
        "--marker", required=True,
        help="a function/class attribute set by a decorator (_expected_failure_cpp_serdes), a pytest mark name, or unittest.expectedFailure",
    )  # fmt: skip
    imp.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    imp.add_argument("--out", default="reports", help="report directory: warn about tests that fail under base too in its last report (default: reports/)")
    imp.set_defaults(func=cmd_xfail_import)

    wrm = sub.add_parser("warm", parents=[common], help="the warm start's launcher: start it (report and rerun do), stop it, or show it")
    wrm.add_argument("action", choices=("start", "stop", "status"))
    wrm.set_defaults(func=cmd_warm)

    dur = sub.add_parser("durations", parents=[common], help="record the last report's test durations; re-plan the shards of suites with shard_seconds")
    dur.add_argument("--out", default="reports", help="report directory (default: reports/)")
    dur.set_defaults(func=cmd_durations)

    from tools.matrix.history import commands as history_commands

    history_commands.add_parser(sub, common)
    sub.choices["history"].set_defaults(func=cmd_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.workspace = getattr(args, "workspace", None)
    args.matrix = getattr(args, "matrix", None) or "matrix.yaml"
    try:
        return args.func(args)
    except config.MatrixError as e:
        print("\n".join(e.problems), file=sys.stderr)
        print(f"error: {len(e.problems)} problem(s) in {args.matrix}; fix them and run the command again", file=sys.stderr)
        return EXIT_USER
    except InvalidRewrite as e:
        print("\n".join(e.problems), file=sys.stderr)
        print(
            f"error: the rewritten {args.matrix} does not validate (above), so nothing was written. This is a bug in the "
            "matrix tool, not in your matrix.yaml: please report it with this output and the report it read.",
            file=sys.stderr,
        )
        return EXIT_USER
    except (UserError, bazel.BazelNotFound, bazel.BazelFailed) as e:
        print(f"error: {visible(str(e))}", file=sys.stderr)  # it may quote arguments, paths, test output
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `matrix list | head`: the reader went away; nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        if e.filename is None:
            return crashed(argv)
        print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_USER
    except Exception:
        return crashed(argv)


def crashed(argv: list[str] | None) -> int:
    """An exception nobody expected: the traceback goes to a file, the terminal gets one line."""
    kind, value, _tb = sys.exc_info()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    fd, path = tempfile.mkstemp(prefix=f"torch-matrix-crash-{stamp}-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"argv: {sys.argv[:1] + (sys.argv[1:] if argv is None else argv)}\ncwd: {os.getcwd()}\npython: {sys.version}\n\n")
        traceback.print_exc(file=f)
    print(f"error: internal error ({kind.__name__}: {value}); this is a bug in the matrix tool; the traceback is in {path}", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
