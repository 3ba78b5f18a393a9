"""The one place that turns a matrix cell into py_tests, and declares the generated-files check
(both called by generated BUILD files)."""

_CELL_MAIN = "//tools/matrix:runtime/cell_main.py"

def matrix_cell(name, library, spec, targets, data = [], durations = None, shard_counts = {}, size = "medium", env = {}, tags = [], exec_properties = {}, target_compatible_with = []):
    """The py_tests of one matrix cell (suite, variant, device), as generate planned them.

    `spec` holds the cell spec fields its targets share, `targets` each target's own (runtime/
    cell_config.py's CellSpec: generate decides every value, this macro only merges them). Each
    target gets its spec as one JSON environment value, not as `args`: Bazel splits args like a shell
    but leaves env values as written, so file names and reasons arrive intact. A cell run by several
    targets (granularity: file) also gets a test_suite of its name, so `name` selects the whole cell.
    Each target depends on the runtime core and on the variant's `library` only: editing another
    variant reruns none of its targets; sharded targets also read the recorded `durations`.
    `exec_properties` and `target_compatible_with` come from the device's row of matrix.yaml's device
    table: a GPU device's targets are compatible only with the `--config=gpu` platform.
    """
    for target, own in targets.items():
        target_spec = dict(spec)
        target_spec.update(own)
        native.py_test(
            name = target,
            srcs = [_CELL_MAIN],
            main = _CELL_MAIN,
            # `$` is the only character Bazel changes in an env value (make variables): escape it.
            env = dict(env, MATRIX_CELL_SPEC = json.encode(target_spec).replace("$", "$$")),
            data = own["test_files"] + data + ([durations] if own.get("durations_file") else []),
            deps = ["//tools/matrix:runtime", library],
            shard_count = shard_counts.get(target, 1),
            size = size,
            tags = tags,
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
        # A test_suite's tags filter its tests; only `manual` is kept, so that `//...` skips a manual cell.
        native.test_suite(name = name, tests = [":" + t for t in targets], tags = [t for t in tags if t == "manual"])

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
