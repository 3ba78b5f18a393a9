"""The one place that decides how a matrix cell becomes py_tests, and how the generated-files check
is declared (both called by generated BUILD files)."""

def matrix_cell(
        name,
        suite,
        variant,
        variant_impl,
        variant_library,
        device,
        test_files,
        granularity = "cell",
        data = [],
        applies_to = [],
        xfail = {},
        skip = {},
        durations = None,
        shard_count = 1,
        shard_counts = {},
        size = "medium",
        test_timeout_s = 120,
        default_device = False,
        pytest_args = [],
        transform_check_off = "",
        env = {},
        tags = []):
    """The py_tests running `test_files` under one variant on one device (one matrix cell).

    granularity "cell": one py_test `name` with `shard_count` shards. "file": one py_test per test
    file, `name/<file without .py>`, with `shard_counts[file]` shards (default 1) and the entries
    of `xfail`/`skip` that name that file, plus a test_suite `name` holding them: editing one file
    (or its expectations) reruns only its targets, and `name` still selects the whole cell.
    The cell depends on the runtime core and on `variant_library` only: editing another variant
    reruns none of its targets.
    """
    # What every py_test of the cell shares (read by _matrix_test).
    cell = dict(
        suite = suite,
        variant = variant,
        variant_impl = variant_impl,
        variant_library = variant_library,
        device = device,
        data = data,
        applies_to = applies_to,
        durations = durations,
        size = size,
        test_timeout_s = test_timeout_s,
        default_device = default_device,
        pytest_args = pytest_args,
        transform_check_off = transform_check_off,
        env = env,
        tags = tags,
    )
    if granularity == "cell":
        _matrix_test(name, cell, test_files, [], xfail, skip, shard_count)
        return
    if granularity != "file":
        fail("granularity must be \"cell\" or \"file\", got %r" % granularity)
    tests = []
    for f in test_files:
        target = name + "/" + (f[:-len(".py")] if f.endswith(".py") else f)
        _matrix_test(
            target,
            cell,
            test_files = [f],
            sibling_files = [s for s in test_files if s != f],
            xfail = {k: v for k, v in xfail.items() if k.split("::")[0] == f},
            skip = {k: v for k, v in skip.items() if k.split("::")[0] == f},
            shard_count = shard_counts.get(f, 1),
        )
        tests.append(":" + target)

    # A test_suite's tags filter its tests; only `manual` is kept, so that `//...` skips a manual cell.
    native.test_suite(name = name, tests = tests, tags = [t for t in tags if t == "manual"])

def _matrix_test(name, cell, test_files, sibling_files, xfail, skip, shard_count):
    """One py_test of `cell` (matrix_cell's shared arguments). Everything the run needs travels in
    args/env, so nothing reads matrix.yaml at test time and editing one cell's expectations changes
    only that cell's cache key. The args are the protocol of runtime/cell_config.py's parser
    (checked by tests/test_generate.py).
    """
    args = [
        "--suite=" + cell["suite"],
        "--variant=" + cell["variant"],
        "--variant-impl=" + cell["variant_impl"],
        "--device=" + cell["device"],
        "--suite-dir=" + native.package_name(),
        "--target=//" + native.package_name() + ":" + name,
        "--test-timeout-s=" + str(cell["test_timeout_s"]),
    ]
    args += ["--sibling-file=" + f for f in sibling_files]
    args += ["--applies-to=" + entry for entry in cell["applies_to"]]
    if cell["default_device"]:
        args.append("--default-device")

    # The tag is the one answer to "is this device a GPU" (config.Cell.tags, from requires_gpu; .bazelrc
    # filters on it): the runtime fails fast when the device's backend is absent.
    if "requires-gpu" in cell["tags"]:
        args.append("--requires-gpu")
    args += ["--test-file=" + f for f in test_files]

    # Checked by the generator (tools/matrix/pytest_args.py): options only, no spaces, quotes or $.
    args += ["--pytest-arg=" + a for a in cell["pytest_args"]]

    # Recorded durations plan the shards (tools/matrix/durations.py); only sharded targets read them,
    # so refreshing the file reruns only those.
    data = cell["data"]
    if cell["durations"] and shard_count > 1:
        args.append("--durations=" + native.package_name() + "/" + cell["durations"])
        data = data + [cell["durations"]]

    # Reasons are free text: env values are not shell-tokenized, only `$` needs escaping.
    expectations = json.encode({"skip": skip, "xfail": xfail}).replace("$", "$$")
    env = dict(cell["env"], MATRIX_EXPECTATIONS = expectations)

    # matrix.yaml transform_check.disabled: the variants read it (tools/matrix/variants/__init__.py,
    # TRANSFORM_CHECK_OFF_ENV) and record `off: <reason>` instead of running the differential check.
    if cell["transform_check_off"]:
        env["MATRIX_TRANSFORM_CHECK_OFF"] = cell["transform_check_off"].replace("$", "$$")
    native.py_test(
        name = name,
        srcs = ["//tools/matrix:runtime/cell_main.py"],
        main = "//tools/matrix:runtime/cell_main.py",
        args = args,
        env = env,
        data = test_files + data,
        deps = ["//tools/matrix:runtime", cell["variant_library"]],
        shard_count = shard_count,
        size = cell["size"],
        tags = cell["tags"],
        python_version = "PY3",
        srcs_version = "PY3",
    )

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
