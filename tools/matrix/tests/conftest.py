"""Shared by every tools test: no test starts a warm launcher (runtime/warm_launcher.py) by running
`report` or `rerun` with a stand-in Bazel; test_warm.py starts its own, in its own directories, and
cellrun sets each cell's warm settings itself."""

import os

os.environ["MATRIX_WARM"] = "off"
