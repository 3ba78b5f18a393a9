"""What runs inside each matrix target: the entry point (cell_main) and the pytest plugin."""

import os


def current_variant() -> str:
    """The variant this test process runs under, for tests that cannot take the `matrix_variant`
    fixture (unittest.TestCase): the plugin sets MATRIX_VARIANT (and MATRIX_DEVICE) for the whole
    session. Outside a matrix cell nothing is transformed, which is the `base` variant."""
    return os.environ.get("MATRIX_VARIANT", "base")
