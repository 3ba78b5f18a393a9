"""Split a suite's expectations file for one cell, at build time (defs.bzl: matrix_cell): for each of
the cell's test files, the entries of the cell's variant on its device that name that file, as one
JSON file the runtime reads (cell_main) instead of entries in the target's spec.

Each output holds only its file's entries, written byte for byte the same while they do not change:
Bazel reruns a test only when one of its inputs changed, so editing one entry reruns only the
targets whose test files it names. generate has checked the file (config/expectations_file.py); a
file edited since into something unreadable fails this action with one line.

    expectations_split --source FILE --display PATH --variant V --device D --out TEST_FILE OUT ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script by the py_binary launcher
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402

from tools.matrix import expectations  # noqa: E402

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def split(data: object, variant: str, device: str, test_file: str, display: str) -> dict[str, object]:
    """The JSON the runtime reads for one test file (runtime/cell_main.py: read_expectations)."""
    spec = data.get(variant) if isinstance(data, dict) else None
    entries = expectations.on_device(spec if isinstance(spec, dict) else {}, device)
    return {"source": display, **{kind: expectations.naming(entries[kind], (test_file,)) for kind in expectations.KINDS}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--display", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--out", nargs=2, action="append", default=[], metavar=("TEST_FILE", "OUT"))
    args = parser.parse_args(argv)
    try:
        data = yaml.load(Path(args.source).read_text(encoding="utf-8"), Loader=_LOADER) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        print(f"{args.display}: unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
              "fix it (`bazel run //tools:matrix -- generate --check` says where)", file=sys.stderr)  # fmt: skip
        return 1
    for test_file, out in args.out:
        text = json.dumps(split(data, args.variant, args.device, test_file, args.display), sort_keys=True, indent=0)
        Path(out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
