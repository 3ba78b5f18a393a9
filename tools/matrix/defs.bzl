"""The one place that decides how a matrix cell becomes a py_test (called by generated BUILD files)."""

def matrix_cell(
        name,
        suite,
        variant,
        variant_impl,
        device,
        test_files,
        data = [],
        applies_to = [],
        xfail = {},
        skip = {},
        durations = None,
        shard_count = 1,
        size = "medium",
        test_timeout_s = 120,
        default_device = False,
        pytest_args = [],
        env = {},
        tags = []):
    """A py_test running `test_files` under one variant on one device.

    Everything the run needs travels in args/env, so nothing reads matrix.yaml at test time and
    editing one cell's expectations changes only that cell's cache key. The args are the protocol
    of runtime/cell_config.py's parser (checked by tests/test_generate.py).
    """
    args = [
        "--suite=" + suite,
        "--variant=" + variant,
        "--variant-impl=" + variant_impl,
        "--device=" + device,
        "--suite-dir=" + native.package_name(),
        "--target=//" + native.package_name() + ":" + name,
        "--test-timeout-s=" + str(test_timeout_s),
    ]
    args += ["--applies-to=" + entry for entry in applies_to]
    if default_device:
        args.append("--default-device")

    # The tag is the one answer to "is this device a GPU" (config.Cell.tags, from requires_gpu; .bazelrc
    # filters on it): the runtime fails fast when the device's backend is absent.
    if "requires-gpu" in tags:
        args.append("--requires-gpu")
    args += ["--test-file=" + f for f in test_files]

    # Checked by the generator (tools/matrix/pytest_args.py): options only, no spaces, quotes or $.
    args += ["--pytest-arg=" + a for a in pytest_args]

    # Recorded durations plan the shards (tools/matrix/durations.py); only sharded cells read them,
    # so refreshing the file reruns only those.
    if durations:
        args.append("--durations=" + native.package_name() + "/" + durations)
        data = data + [durations]

    # Reasons are free text: env values are not shell-tokenized, only `$` needs escaping.
    expectations = json.encode({"skip": skip, "xfail": xfail}).replace("$", "$$")
    native.py_test(
        name = name,
        srcs = ["//tools/matrix:runtime/cell_main.py"],
        main = "//tools/matrix:runtime/cell_main.py",
        args = args,
        env = dict(env, MATRIX_EXPECTATIONS = expectations),
        data = test_files + data,
        deps = ["//tools/matrix:runtime"],
        shard_count = shard_count,
        size = size,
        tags = tags,
        python_version = "PY3",
        srcs_version = "PY3",
    )
