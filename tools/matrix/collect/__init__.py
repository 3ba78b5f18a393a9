"""Read what Bazel left (bazel-testlogs/**, optionally the Build Event Protocol file) into Records.

Sources, per cell shard, best first: the cell's results (matrix_results.json, the compact digest of
report.json, else report.json itself, from test.outputs/outputs.zip or unzipped), then test.xml
(JUnit, every field of each test's record a property), then test.log alone (the target died with
neither: every test of the shard becomes `crashed`, the log tail kept; `error` when Bazel's own
test.xml says it exited with a status rather than a signal). A source that is there but unreadable
gives way to the next one, and a problem line names it. Each source also says which tests the
target collected that the shard has no record of (runtime/outputs.COLLECTED_NOT_RUN).

Which record each known test of a cell gets, this run's, the previous report's or `not_run` /
`crashed` / `error` with the reason, is known_tests.py's decision: a report never loses a test it
knew. The BEP file, when given, adds what only Bazel knows: cache hits, attempts of flaky targets,
Bazel's own status.

One bad shard never spoils the rest: when none of its sources can be read (a corrupt or truncated
zip, invalid JSON or XML, rows that are not what records.Record's fields say) the tests it would
have run get `error` records whose message names the file and what is wrong; a shard that ran but
reported no tests gets `error` records with its cell's own problems as the reason. Files are read
whole into memory by name, each at most MAX_OUTPUT_BYTES; nothing is extracted.

A record whose status keeps evidence (statuses.KEEPS_EVIDENCE) gets the evidence its test left in the
shard's outputs (runtime/evidence.py), checked field by field: a test writes into those outputs itself,
so evidence that is not what the writer writes becomes a `problem` of that record's evidence alone.

Modules, one job each: `files` (bounded reading of files and zip members), `rows` (a shard's results
as rows, checked against Record's fields, made Records), `sources` (one shard's sources, best first),
`evidence`, `bep`, `collector` (the run over the matrix's cells).
"""

from tools.matrix.collect.bep import BazelResult, read_bep
from tools.matrix.collect.collector import Collected, collect
from tools.matrix.collect.evidence import EVIDENCE_MAX_BYTES, EVIDENCE_REPORT_CHARS, read_evidence
from tools.matrix.collect.files import LOG_TAIL_CHARS, MAX_OUTPUT_BYTES, Unreadable
from tools.matrix.collect.sources import read_cell_report, shard_dirs

__all__ = [
    "EVIDENCE_MAX_BYTES",
    "EVIDENCE_REPORT_CHARS",
    "LOG_TAIL_CHARS",
    "MAX_OUTPUT_BYTES",
    "BazelResult",
    "Collected",
    "Unreadable",
    "collect",
    "read_bep",
    "read_cell_report",
    "read_evidence",
    "shard_dirs",
]
