"""bench_matrix.py's modules, one job each (bench_matrix.py itself: the options and main):

    summary.py        the progress lines and the summary table
    nested_bazel.py   the benchmark's own Bazel (output base, locks, @pyenv mirror) and the workspace copy
    copy_edits.py     the edits a step makes to the copy (matrix.yaml with ruamel + generate, appended comments)
    run_outputs.py    what a Bazel run left: the shards' report.json and evidence, BEP results and durations
    plain_pytest.py   the plain-pytest side: a target as cell_main's pytest child, no Bazel; start-up probes
    variant_costs.py  the per-variant cost table (transform, check, evidence per test vs base)
    context.py        what the steps share: options, budget, results, set-up, the selected cells
    steps/            the measurements, in order (steps/__init__.py: STEPS, and the loop that runs them)

tools.matrix is imported inside functions: bench_matrix.py parses its options and re-runs itself with the
project's Python environment before anything needs PyYAML, jsonschema or torch.
"""
