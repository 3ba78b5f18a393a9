"""The test matrix runner: matrix.yaml -> Bazel targets -> pytest cells -> compatibility report."""
