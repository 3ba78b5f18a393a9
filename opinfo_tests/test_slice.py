"""OpInfo tests: the CI slice (opinfo_cases.SLICE): the operators `bazel test //...` runs under every variant."""

from opinfo_cases import generated_tests

globals().update(generated_tests(__file__))
