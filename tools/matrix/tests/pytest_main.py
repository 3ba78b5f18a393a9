"""py_test entry point for the tools' own tests: runs pytest on the files given as arguments,
writing JUnit XML where Bazel asks for it and temporary files only under TEST_TMPDIR."""

import os
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    args = ["-p", "no:cacheprovider", "-q", "-rfEs", *sys.argv[1:]]
    if os.environ.get("XML_OUTPUT_FILE"):
        args.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
    if os.environ.get("TEST_TMPDIR"):
        args.append(f"--basetemp={os.path.join(os.environ['TEST_TMPDIR'], 'pytest')}")
    sys.dont_write_bytecode = True
    sys.exit(pytest.main(args))
