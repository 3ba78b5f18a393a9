"""The one place that turns a matrix cell into py_tests, and declares the generated-files check
(both called by generated BUILD files)."""

_CELL_MAIN = "//tools/matrix:runtime/cell_main.py"

def _expectations_split_impl(ctx):
    args = ctx.actions.args()
    args.add("--source", ctx.file.src)
    args.add("--display", ctx.attr.display)
    args.add("--variant", ctx.attr.variant)
    args.add("--device", ctx.attr.device)
    for test_file, out in zip(ctx.attr.test_files, ctx.outputs.outs):
        args.add_all("--out", [test_file, out])
    ctx.actions.run(
        executable = ctx.executable._split,
        arguments = [args],
        inputs = [ctx.file.src],
        outputs = ctx.outputs.outs,
        mnemonic = "MatrixExpectations",
        progress_message = "Splitting %s for %s on %s" % (ctx.attr.display, ctx.attr.variant, ctx.attr.device),
    )
    return [DefaultInfo(files = depset(ctx.outputs.outs))]

# One cell's entries of a suite's expectations file, one output per test file (expectations_split.py):
# a target depends only on its own files' outputs, and Bazel reruns a test only when one of its inputs
# changed, so editing one entry reruns only the targets it names.
_expectations_split = rule(
    implementation = _expectations_split_impl,
    attrs = {
        "src": attr.label(allow_single_file = True, mandatory = True),
        "display": attr.string(mandatory = True),
        "variant": attr.string(mandatory = True),
        "device": attr.string(mandatory = True),
        "test_files": attr.string_list(mandatory = True),
        "outs": attr.output_list(mandatory = True),
        "_split": attr.label(default = "//tools/matrix:expectations_split", executable = True, cfg = "exec"),
    },
)

def matrix_cell(name, library, spec, targets, data = [], durations = None, shard_counts = {}, size = "medium", env = {}, tags = [], exec_properties = {}, target_compatible_with = [], manual = [], expectations = None):
    """The py_tests of one matrix cell (suite, variant, device), as generate planned them.

    `spec` holds the cell spec fields its targets share, `targets` each target's own (runtime/
    cell_config.py's CellSpec: generate decides every value, this macro only merges them). Each
    target gets its spec as one JSON environment value, not as `args`: Bazel splits args like a shell
    but leaves env values as written, so file names and reasons arrive intact. A cell run by several
    targets (granularity: file) also gets a test_suite of its name, so `name` selects the whole cell.
    Each target depends on the runtime core and on the variant's `library` only: editing another
    variant reruns none of its targets; sharded targets also read the recorded `durations`.
    `exec_properties` and `target_compatible_with` come from the device's row of matrix.yaml's device
    table: a GPU device's targets are compatible only with the `--config=gpu` platform. The targets
    in `manual` are tagged manual (`bazel test //...` leaves them out). With `expectations` (the
    suite's expectations file), each target reads its test files' entries from the files its spec's
    `expectations` names, which one action splits from that file (relative to the package).
    """
    package = native.package_name() + "/"
    if expectations:
        parts = [(f, p) for own in targets.values() for f, p in zip(own["test_files"], own["expectations"])]
        _expectations_split(
            name = name + "_expectations",
            src = expectations,
            display = package + expectations,
            variant = spec["variant"],
            device = spec["device"],
            test_files = [f for f, _ in parts],
            outs = [p[len(package):] for _, p in parts],
            tags = [t for t in tags if t == "manual"],
            target_compatible_with = target_compatible_with,
        )
    for target, own in targets.items():
        target_spec = dict(spec)
        target_spec.update(own)
        native.py_test(
            name = target,
            srcs = [_CELL_MAIN],
            main = _CELL_MAIN,
            # `$` is the only character Bazel changes in an env value (make variables): escape it.
            env = dict(env, MATRIX_CELL_SPEC = json.encode(target_spec).replace("$", "$$")),
            data = own["test_files"] + data + ([durations] if own.get("durations_file") else []) +
                   [p[len(package):] for p in own.get("expectations", [])],
            deps = ["//tools/matrix:runtime", library],
            shard_count = shard_counts.get(target, 1),
            size = size,
            tags = tags + (["manual"] if target in manual else []),
            # No __init__.py invented in the runfiles: pytest then imports a suite's test files as
            # plain pytest does from the source tree (the suite directory on sys.path, so a test may
            # `import helpers` beside it, as PyTorch's test files do).
            legacy_create_init = False,
            exec_properties = exec_properties,
            target_compatible_with = target_compatible_with,
            python_version = "PY3",
            srcs_version = "PY3",
        )
    if list(targets) != [name]:
        # A test_suite's tags filter its tests; only `manual` is given, so that `//...` skips a cell with a
        # manual target (`//...` would run every test a test_suite it reaches lists, manual ones too).
        native.test_suite(name = name, tests = [":" + t for t in targets], tags = ["manual"] if manual or "manual" in tags else [])

def matrix_generated_files_test(name, data):
    """Fails `bazel test //...` when a file generate writes is stale (`generate --check`), reading
    the workspace from its runfiles: `data` must hold matrix.yaml, the generated BUILD files, every
    suite's files and the variants' libraries."""
    native.py_test(
        name = name,
        srcs = ["//tools/matrix:cli.py"],
        args = ["--workspace", ".", "generate", "--check", "--runfiles"],
        # No __init__.py files invented in runfiles: the check must see the suites as they are.
        legacy_create_init = False,
        data = data,
        main = "//tools/matrix:cli.py",
        python_version = "PY3",
        tags = ["matrix-tooling"],
        deps = ["//tools/matrix:matrix_lib"],
    )
