"""matrix.yaml, loaded and validated into an immutable, typed Matrix.

Validation reports every problem at once, each as `matrix.yaml:LINE:COL: what is wrong`, with the
valid choices or a did-you-mean: load.py reads the YAML and checks it against the JSON Schema,
build.py checks cross-references and the file system and builds the model (model.py).
"""

from tools.matrix.config.load import MAX_BYTES, SCHEMA_PATH, load, parse
from tools.matrix.config.model import (
    DEFAULT_TEST_TIMEOUT_S,
    GRANULARITIES,
    Cell,
    Device,
    Expectations,
    Matrix,
    MatrixError,
    Suite,
    Target,
    Variant,
    relative,
    test_file_of,
)
from tools.matrix.config.problems import did_you_mean

__all__ = [
    "DEFAULT_TEST_TIMEOUT_S", "GRANULARITIES", "MAX_BYTES", "SCHEMA_PATH", "Cell", "Device", "Expectations", "Matrix", "MatrixError",
    "Suite", "Target", "Variant", "did_you_mean", "load", "parse", "relative", "test_file_of",
]  # fmt: skip
