"""The names drill: a report never loses a test it knew, whatever ran last. Real Bazel, the real
`report` and `rerun` commands, real broken outputs; every step asserts the exact records.

    bazel run //tools/matrix/drill:names_drill      # ~3 min on 2 cores

(Over 500 lines on purpose: one scenario told step by step, each step's exact records beside it;
split, the steps would lose the state they build on.)

In a scratch workspace (tools/scratch_workspace.py, this build's @pyenv) holding the suites in
names_suites/ (nm_whole: one target per cell, two variants; nm_files: one target per file; nm_sharded:
two shards; nm_single and nm_lone: one file, one cell), after a first full `report`:

A. filtered runs (`bazel test <target> --test_filter=...`: a bare name, a glob, a comma list on a
   sharded target, a node id in a file's target), then `report --no-run`: the tests the filter left
   out keep their earlier records (run_id of the run that produced them), failures still fail the
   report (a report of only the filtered cell is not green); without an earlier report they are
   `not_run` "deselected by --test_filter ... in run R".
B. reruns (`rerun --failed` on cells and on file targets, twice, `rerun --tests <glob>`), each
   followed by `report --no-run`: the passing tests of the rerun targets keep their records.
C. broken outputs of cells whose tests no other cell knows: a truncated outputs.zip (the digest
   unreadable) with an intact test.xml, a deleted outputs.zip, a shard SIGKILLed (no outputs, Bazel's
   own test.xml), a one-shard target SIGKILLed, a single-file suite with no outputs.zip and a
   truncated test.xml: every test keeps a record, with or without an earlier report.
D. matrix.yaml edits between runs (a removed variant, a removed test file, an added cell, a renamed
   suite, a test deleted from its file): `rerun --failed` names what it dropped and skipped, removed
   cells and files do not linger, and the next run of a target, filtered or not, drops a test deleted
   from it (the runtime lists every test it collected).
E. targets Bazel did not run in the report's own run, with an earlier run's testlogs on disk: a
   plug-in variant whose library no longer builds (its cells' tests are `error`, "did not build",
   not the earlier passes stamped with this run) and a GPU cell skipped as incompatible on this
   machine (`not_run`, Bazel's reason, not the errors of its earlier `--config=gpu` run).

Each expected record is one line below: case, suite, variant, test, status, the run that produced it
(the label of the step whose report has that run_id), and a part of its message. The drill runs every
step even after a failure and ends with the failures per case.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import NoReturn

from tools.scratch_workspace import discard, nested_env, project_pyenv, scratch_workspace

HERE = Path(__file__).resolve().parent
STEP_TIMEOUT_S = 600
NO_RESULTS = "(no test results for this suite)"

MATRIX_YAML = """\
# The names drill's matrix (written by tools/matrix/drill/names_drill.py).
devices:
  cpu: {}
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: The API untouched.
  other:
    impl: tools.matrix.variants.base:Base
    description: A second column, untouched too.
suites:
  nm_whole:
    variants: [base, other]
    devices: [cpu]
  nm_files:
    granularity: file
    variants: [base]
    devices: [cpu]
  nm_sharded:
    variants: [base]
    devices: [cpu]
    shards: 2
  nm_single:
    variants: [base]
    devices: [cpu]
  nm_lone:
    variants: [base]
    devices: [cpu]
"""
# D: variant `other` removed from nm_whole, added to nm_files; nm_lone renamed nm_alone (same directory).
EDITED_MATRIX_YAML = (
    MATRIX_YAML.replace("  nm_whole:\n    variants: [base, other]", "  nm_whole:\n    variants: [base]")
    .replace("    granularity: file\n    variants: [base]", "    granularity: file\n    variants: [base, other]")
    .replace("  nm_lone:\n", "  nm_alone:\n    directory: nm_lone\n")
)
# A6: a matrix of nm_whole's base cell alone, reported from the filtered run of that cell.
WHOLE_BASE_YAML = MATRIX_YAML.split("suites:")[0] + "suites:\n  nm_whole:\n    variants: [base]\n    devices: [cpu]\n"

# --- the expected records -------------------------------------------------------------------------
# "case suite variant test status run [message part]"; `--`: a record no case is about.
R1 = """
-- nm_whole   base  test_a.py::test_one      passed  R1
-- nm_whole   base  test_a.py::test_two      failed  R1 test_two fails until DRILL_FIX=1
-- nm_whole   base  test_a.py::test_three    passed  R1
-- nm_whole   base  test_b.py::test_four     passed  R1
-- nm_whole   base  test_b.py::test_five     failed  R1 test_five always fails
-- nm_whole   other test_a.py::test_one      passed  R1
-- nm_whole   other test_a.py::test_two      failed  R1 test_two fails until DRILL_FIX=1
-- nm_whole   other test_a.py::test_three    passed  R1
-- nm_whole   other test_b.py::test_four     passed  R1
-- nm_whole   other test_b.py::test_five     failed  R1 test_five always fails
-- nm_files   base  test_fa.py::test_fa1     passed  R1
-- nm_files   base  test_fa.py::test_fa2     failed  R1 test_fa2 always fails
-- nm_files   base  test_fb.py::test_fb1     passed  R1
-- nm_files   base  test_fb.py::test_fb2     failed  R1 test_fb2 always fails
-- nm_sharded base  test_s.py::test_s1       passed  R1
-- nm_sharded base  test_s.py::test_s2       failed  R1 test_s2 always fails
-- nm_sharded base  test_s.py::test_s3       passed  R1
-- nm_sharded base  test_s.py::test_s4       passed  R1
-- nm_single  base  test_single.py::test_x1  passed  R1
-- nm_single  base  test_single.py::test_x2  failed  R1 test_x2 always fails
-- nm_single  base  test_single.py::test_x3  passed  R1
-- nm_lone    base  test_lone.py::test_l1    passed  R1
-- nm_lone    base  test_lone.py::test_l2    failed  R1 test_l2 always fails
"""
# A: after `--test_filter=test_one` (nm_whole base), `'test_th*'` (nm_whole other), `test_s1,test_s4`
# (nm_sharded), `test_fa.py::test_fa1` (nm_files' test_fa target): report --no-run.
R2 = """
A1 nm_whole   base  test_a.py::test_one      passed  R2
A1 nm_whole   base  test_a.py::test_two      failed  R1 test_two fails until DRILL_FIX=1
A1 nm_whole   base  test_a.py::test_three    passed  R1
A1 nm_whole   base  test_b.py::test_four     passed  R1
A1 nm_whole   base  test_b.py::test_five     failed  R1 test_five always fails
A2 nm_whole   other test_a.py::test_one      passed  R1
A2 nm_whole   other test_a.py::test_two      failed  R1 test_two fails until DRILL_FIX=1
A2 nm_whole   other test_a.py::test_three    passed  R2
A2 nm_whole   other test_b.py::test_four     passed  R1
A2 nm_whole   other test_b.py::test_five     failed  R1 test_five always fails
A4 nm_files   base  test_fa.py::test_fa1     passed  R2
A4 nm_files   base  test_fa.py::test_fa2     failed  R1 test_fa2 always fails
-- nm_files   base  test_fb.py::test_fb1     passed  R2
-- nm_files   base  test_fb.py::test_fb2     failed  R2 test_fb2 always fails
A3 nm_sharded base  test_s.py::test_s1       passed  R2
A3 nm_sharded base  test_s.py::test_s2       failed  R1 test_s2 always fails
A3 nm_sharded base  test_s.py::test_s3       passed  R1
A3 nm_sharded base  test_s.py::test_s4       passed  R2
-- nm_single  base  test_single.py::test_x1  passed  R2
-- nm_single  base  test_single.py::test_x2  failed  R2 test_x2 always fails
-- nm_single  base  test_single.py::test_x3  passed  R2
-- nm_lone    base  test_lone.py::test_l1    passed  R2
-- nm_lone    base  test_lone.py::test_l2    failed  R2 test_l2 always fails
"""
# A5: the same testlogs with no earlier report: what the filters left out is not_run, saying why.
R2N = """
A5 nm_whole   base  test_a.py::test_one      passed  R2n
A5 nm_whole   base  test_a.py::test_two      not_run R2n deselected by --test_filter 'test_one' in run R2n
A5 nm_whole   base  test_a.py::test_three    not_run R2n deselected by --test_filter 'test_one' in run R2n
A5 nm_whole   base  test_b.py::test_four     not_run R2n deselected by --test_filter 'test_one' in run R2n
A5 nm_whole   base  test_b.py::test_five     not_run R2n deselected by --test_filter 'test_one' in run R2n
A5 nm_whole   other test_a.py::test_one      not_run R2n deselected by --test_filter 'test_th*' in run R2n
A5 nm_whole   other test_a.py::test_two      not_run R2n deselected by --test_filter 'test_th*' in run R2n
A5 nm_whole   other test_a.py::test_three    passed  R2n
A5 nm_whole   other test_b.py::test_four     not_run R2n deselected by --test_filter 'test_th*' in run R2n
A5 nm_whole   other test_b.py::test_five     not_run R2n deselected by --test_filter 'test_th*' in run R2n
A5 nm_files   base  test_fa.py::test_fa1     passed  R2n
A5 nm_files   base  test_fa.py::test_fa2     not_run R2n deselected by --test_filter 'test_fa.py::test_fa1' in run R2n
-- nm_files   base  test_fb.py::test_fb1     passed  R2n
-- nm_files   base  test_fb.py::test_fb2     failed  R2n test_fb2 always fails
A5 nm_sharded base  test_s.py::test_s1       passed  R2n
A5 nm_sharded base  test_s.py::test_s2       not_run R2n deselected by --test_filter 'test_s1,test_s4' in run R2n
A5 nm_sharded base  test_s.py::test_s3       not_run R2n deselected by --test_filter 'test_s1,test_s4' in run R2n
A5 nm_sharded base  test_s.py::test_s4       passed  R2n
-- nm_single  base  test_single.py::test_x1  passed  R2n
-- nm_single  base  test_single.py::test_x2  failed  R2n test_x2 always fails
-- nm_single  base  test_single.py::test_x3  passed  R2n
-- nm_lone    base  test_lone.py::test_l1    passed  R2n
-- nm_lone    base  test_lone.py::test_l2    failed  R2n test_l2 always fails
"""
# A6: a report of nm_whole's base cell alone after its filtered run: the failures left out still fail it.
RG = """
A6 nm_whole   base  test_a.py::test_one      passed  Rg
A6 nm_whole   base  test_a.py::test_two      failed  R1 test_two fails until DRILL_FIX=1
A6 nm_whole   base  test_a.py::test_three    passed  R1
A6 nm_whole   base  test_b.py::test_four     passed  R1
A6 nm_whole   base  test_b.py::test_five     failed  R1 test_five always fails
"""
# B1: rerun --failed --suite nm_whole --suite nm_files (over R2).
R3 = """
B1 nm_whole   base  test_a.py::test_one      passed  R2
B1 nm_whole   base  test_a.py::test_two      failed  R3 test_two fails until DRILL_FIX=1
B1 nm_whole   base  test_a.py::test_three    passed  R1
B1 nm_whole   base  test_b.py::test_four     passed  R1
B1 nm_whole   base  test_b.py::test_five     failed  R3 test_five always fails
B1 nm_whole   other test_a.py::test_one      passed  R1
B1 nm_whole   other test_a.py::test_two      failed  R3 test_two fails until DRILL_FIX=1
B1 nm_whole   other test_a.py::test_three    passed  R2
B1 nm_whole   other test_b.py::test_four     passed  R1
B1 nm_whole   other test_b.py::test_five     failed  R3 test_five always fails
B2 nm_files   base  test_fa.py::test_fa1     passed  R2
B2 nm_files   base  test_fa.py::test_fa2     failed  R3 test_fa2 always fails
B2 nm_files   base  test_fb.py::test_fb1     passed  R2
B2 nm_files   base  test_fb.py::test_fb2     failed  R3 test_fb2 always fails
-- nm_sharded base  test_s.py::test_s1       passed  R2
-- nm_sharded base  test_s.py::test_s2       failed  R1 test_s2 always fails
-- nm_sharded base  test_s.py::test_s3       passed  R1
-- nm_sharded base  test_s.py::test_s4       passed  R2
-- nm_single  base  test_single.py::test_x1  passed  R2
-- nm_single  base  test_single.py::test_x2  failed  R2 test_x2 always fails
-- nm_single  base  test_single.py::test_x3  passed  R2
-- nm_lone    base  test_lone.py::test_l1    passed  R2
-- nm_lone    base  test_lone.py::test_l2    failed  R2 test_l2 always fails
"""
# B3: report --no-run after that rerun (the rerun targets' testlogs hold only the failures).
R4 = """
B3 nm_whole   base  test_a.py::test_one      passed  R2
B3 nm_whole   base  test_a.py::test_two      failed  R4 test_two fails until DRILL_FIX=1
B3 nm_whole   base  test_a.py::test_three    passed  R1
B3 nm_whole   base  test_b.py::test_four     passed  R1
B3 nm_whole   base  test_b.py::test_five     failed  R4 test_five always fails
B3 nm_whole   other test_a.py::test_one      passed  R1
B3 nm_whole   other test_a.py::test_two      failed  R4 test_two fails until DRILL_FIX=1
B3 nm_whole   other test_a.py::test_three    passed  R2
B3 nm_whole   other test_b.py::test_four     passed  R1
B3 nm_whole   other test_b.py::test_five     failed  R4 test_five always fails
B3 nm_files   base  test_fa.py::test_fa1     passed  R2
B3 nm_files   base  test_fa.py::test_fa2     failed  R4 test_fa2 always fails
B3 nm_files   base  test_fb.py::test_fb1     passed  R2
B3 nm_files   base  test_fb.py::test_fb2     failed  R4 test_fb2 always fails
-- nm_sharded base  test_s.py::test_s1       passed  R4
-- nm_sharded base  test_s.py::test_s2       failed  R1 test_s2 always fails
-- nm_sharded base  test_s.py::test_s3       passed  R1
-- nm_sharded base  test_s.py::test_s4       passed  R4
-- nm_single  base  test_single.py::test_x1  passed  R4
-- nm_single  base  test_single.py::test_x2  failed  R4 test_x2 always fails
-- nm_single  base  test_single.py::test_x3  passed  R4
-- nm_lone    base  test_lone.py::test_l1    passed  R4
-- nm_lone    base  test_lone.py::test_l2    failed  R4 test_l2 always fails
"""
# B4: rerun --failed --suite nm_whole -- --test_env=DRILL_FIX=1: test_two now passes.
R5 = """
B4 nm_whole   base  test_a.py::test_one      passed  R2
B4 nm_whole   base  test_a.py::test_two      passed  R5
B4 nm_whole   base  test_a.py::test_three    passed  R1
B4 nm_whole   base  test_b.py::test_four     passed  R1
B4 nm_whole   base  test_b.py::test_five     failed  R5 test_five always fails
B4 nm_whole   other test_a.py::test_one      passed  R1
B4 nm_whole   other test_a.py::test_two      passed  R5
B4 nm_whole   other test_a.py::test_three    passed  R2
B4 nm_whole   other test_b.py::test_four     passed  R1
B4 nm_whole   other test_b.py::test_five     failed  R5 test_five always fails
-- nm_files   base  test_fa.py::test_fa1     passed  R2
-- nm_files   base  test_fa.py::test_fa2     failed  R4 test_fa2 always fails
-- nm_files   base  test_fb.py::test_fb1     passed  R2
-- nm_files   base  test_fb.py::test_fb2     failed  R4 test_fb2 always fails
-- nm_sharded base  test_s.py::test_s1       passed  R4
-- nm_sharded base  test_s.py::test_s2       failed  R1 test_s2 always fails
-- nm_sharded base  test_s.py::test_s3       passed  R1
-- nm_sharded base  test_s.py::test_s4       passed  R4
-- nm_single  base  test_single.py::test_x1  passed  R4
-- nm_single  base  test_single.py::test_x2  failed  R4 test_x2 always fails
-- nm_single  base  test_single.py::test_x3  passed  R4
-- nm_lone    base  test_lone.py::test_l1    passed  R4
-- nm_lone    base  test_lone.py::test_l2    failed  R4 test_l2 always fails
"""
# B5: rerun --suite nm_sharded --tests 'test_s[23]' (a glob, over a sharded cell).
R6 = """
-- nm_whole   base  test_a.py::test_one      passed  R2
-- nm_whole   base  test_a.py::test_two      passed  R5
-- nm_whole   base  test_a.py::test_three    passed  R1
-- nm_whole   base  test_b.py::test_four     passed  R1
-- nm_whole   base  test_b.py::test_five     failed  R5 test_five always fails
-- nm_whole   other test_a.py::test_one      passed  R1
-- nm_whole   other test_a.py::test_two      passed  R5
-- nm_whole   other test_a.py::test_three    passed  R2
-- nm_whole   other test_b.py::test_four     passed  R1
-- nm_whole   other test_b.py::test_five     failed  R5 test_five always fails
-- nm_files   base  test_fa.py::test_fa1     passed  R2
-- nm_files   base  test_fa.py::test_fa2     failed  R4 test_fa2 always fails
-- nm_files   base  test_fb.py::test_fb1     passed  R2
-- nm_files   base  test_fb.py::test_fb2     failed  R4 test_fb2 always fails
B5 nm_sharded base  test_s.py::test_s1       passed  R4
B5 nm_sharded base  test_s.py::test_s2       failed  R6 test_s2 always fails
B5 nm_sharded base  test_s.py::test_s3       passed  R6
B5 nm_sharded base  test_s.py::test_s4       passed  R4
-- nm_single  base  test_single.py::test_x1  passed  R4
-- nm_single  base  test_single.py::test_x2  failed  R4 test_x2 always fails
-- nm_single  base  test_single.py::test_x3  passed  R4
-- nm_lone    base  test_lone.py::test_l1    passed  R4
-- nm_lone    base  test_lone.py::test_l2    failed  R4 test_l2 always fails
"""
# C: `bazel test` of nm_sharded, nm_single, nm_files, nm_lone with DRILL_KILL=1 (nm_sharded's shard 2
# and nm_single are SIGKILLed), then: nm_files' test_fa outputs.zip truncated (test.xml intact),
# test_fb outputs.zip deleted, nm_lone's outputs.zip deleted and test.xml truncated. report --no-run.
R7 = """
-- nm_whole   base  test_a.py::test_one      passed  R2
-- nm_whole   base  test_a.py::test_two      passed  R7
-- nm_whole   base  test_a.py::test_three    passed  R1
-- nm_whole   base  test_b.py::test_four     passed  R1
-- nm_whole   base  test_b.py::test_five     failed  R7 test_five always fails
-- nm_whole   other test_a.py::test_one      passed  R1
-- nm_whole   other test_a.py::test_two      passed  R7
-- nm_whole   other test_a.py::test_three    passed  R2
-- nm_whole   other test_b.py::test_four     passed  R1
-- nm_whole   other test_b.py::test_five     failed  R7 test_five always fails
C1 nm_files   base  test_fa.py::test_fa1     passed  R7
C1 nm_files   base  test_fa.py::test_fa2     failed  R7 test_fa2 always fails
C2 nm_files   base  test_fb.py::test_fb1     passed  R7
C2 nm_files   base  test_fb.py::test_fb2     failed  R7 test_fb2 always fails
C3 nm_sharded base  test_s.py::test_s1       passed  R7
C3 nm_sharded base  test_s.py::test_s2       crashed R7 died without writing a report or test.xml (see log tail); its last result: failed in run R6
C3 nm_sharded base  test_s.py::test_s3       passed  R7
C3 nm_sharded base  test_s.py::test_s4       crashed R7 died without writing a report or test.xml (see log tail); its last result: passed in run R4
C4 nm_single  base  test_single.py::test_x1  crashed R7 died without writing a report or test.xml (see log tail); its last result: passed in run R4
C4 nm_single  base  test_single.py::test_x2  crashed R7 died without writing a report or test.xml (see log tail); its last result: failed in run R4
C4 nm_single  base  test_single.py::test_x3  crashed R7 died without writing a report or test.xml (see log tail); its last result: passed in run R4
C5 nm_lone    base  test_lone.py::test_l1    error   R7 nm_lone/nm_lone_base_cpu/test.xml: invalid XML
C5 nm_lone    base  test_lone.py::test_l2    error   R7 nm_lone/nm_lone_base_cpu/test.xml: invalid XML
"""
# C, with no earlier report: names come from test.xml and from the other shard.
R7N = """
-- nm_whole   base  test_a.py::test_one      not_run R7n deselected by --test_filter 'test_a.py::test_two,test_b.py::test_five' in run R7n
-- nm_whole   base  test_a.py::test_two      passed  R7n
-- nm_whole   base  test_a.py::test_three    not_run R7n deselected by --test_filter 'test_a.py::test_two,test_b.py::test_five' in run R7n
-- nm_whole   base  test_b.py::test_four     not_run R7n deselected by --test_filter 'test_a.py::test_two,test_b.py::test_five' in run R7n
-- nm_whole   base  test_b.py::test_five     failed  R7n test_five always fails
-- nm_whole   other test_a.py::test_one      not_run R7n deselected by --test_filter 'test_a.py::test_two,test_b.py::test_five' in run R7n
-- nm_whole   other test_a.py::test_two      passed  R7n
-- nm_whole   other test_a.py::test_three    not_run R7n deselected by --test_filter 'test_a.py::test_two,test_b.py::test_five' in run R7n
-- nm_whole   other test_b.py::test_four     not_run R7n deselected by --test_filter 'test_a.py::test_two,test_b.py::test_five' in run R7n
-- nm_whole   other test_b.py::test_five     failed  R7n test_five always fails
C1 nm_files   base  test_fa.py::test_fa1     passed  R7n
C1 nm_files   base  test_fa.py::test_fa2     failed  R7n test_fa2 always fails
C2 nm_files   base  test_fb.py::test_fb1     passed  R7n
C2 nm_files   base  test_fb.py::test_fb2     failed  R7n test_fb2 always fails
C3 nm_sharded base  test_s.py::test_s1       passed  R7n
C3 nm_sharded base  test_s.py::test_s2       crashed R7n died without writing a report or test.xml (see log tail)
C3 nm_sharded base  test_s.py::test_s3       passed  R7n
C3 nm_sharded base  test_s.py::test_s4       crashed R7n died without writing a report or test.xml (see log tail)
C4 nm_single  base  {NO_RESULTS}             crashed R7n died without writing a report or test.xml (see log tail)
C5 nm_lone    base  {NO_RESULTS}             error   R7n nm_lone/nm_lone_base_cpu/test.xml: invalid XML
""".replace("{NO_RESULTS}", NO_RESULTS.replace(" ", "\x00"))
# D: EDITED_MATRIX_YAML, nm_files/test_fb.py removed, test_three deleted from nm_whole/test_a.py;
# rerun --failed --suite nm_whole --suite nm_files --suite nm_alone.
R8 = """
D5 nm_whole   base  test_a.py::test_one      passed  R2
D5 nm_whole   base  test_a.py::test_two      passed  R7
D5 nm_whole   base  test_b.py::test_four     passed  R1
D5 nm_whole   base  test_b.py::test_five     failed  R8 test_five always fails
D2 nm_files   base  test_fa.py::test_fa1     passed  R7
D2 nm_files   base  test_fa.py::test_fa2     failed  R8 test_fa2 always fails
D3 nm_files   other test_fa.py::test_fa1     not_run R8 this rerun did not run its target
D3 nm_files   other test_fa.py::test_fa2     not_run R8 this rerun did not run its target
-- nm_sharded base  test_s.py::test_s1       passed  R7
-- nm_sharded base  test_s.py::test_s2       crashed R7 died without writing a report or test.xml (see log tail); its last result: failed in run R6
-- nm_sharded base  test_s.py::test_s3       passed  R7
-- nm_sharded base  test_s.py::test_s4       crashed R7 died without writing a report or test.xml (see log tail); its last result: passed in run R4
-- nm_single  base  test_single.py::test_x1  crashed R7 its last result: passed in run R4
-- nm_single  base  test_single.py::test_x2  crashed R7 its last result: failed in run R4
-- nm_single  base  test_single.py::test_x3  crashed R7 its last result: passed in run R4
D4 nm_alone   base  {NO_RESULTS}             not_run R8 this rerun did not run its target
""".replace("{NO_RESULTS}", NO_RESULTS.replace(" ", "\x00"))
# D5: `bazel test //nm_whole:nm_whole_base_cpu` (unfiltered, whole), report --no-run: all fresh, test_three stays gone.
R9 = """
D5 nm_whole   base  test_a.py::test_one      passed  R9
D5 nm_whole   base  test_a.py::test_two      failed  R9 test_two fails until DRILL_FIX=1
D5 nm_whole   base  test_b.py::test_four     passed  R9
D5 nm_whole   base  test_b.py::test_five     failed  R9 test_five always fails
-- nm_files   base  test_fa.py::test_fa1     passed  R7
-- nm_files   base  test_fa.py::test_fa2     failed  R9 test_fa2 always fails
D3 nm_files   other test_fa.py::test_fa1     not_run R9 the target was not run
D3 nm_files   other test_fa.py::test_fa2     not_run R9 the target was not run
-- nm_sharded base  test_s.py::test_s1       passed  R9
-- nm_sharded base  test_s.py::test_s2       crashed R9 died without writing a report or test.xml (see log tail); its last result: crashed in run R7
-- nm_sharded base  test_s.py::test_s3       passed  R9
-- nm_sharded base  test_s.py::test_s4       crashed R9 died without writing a report or test.xml (see log tail); its last result: crashed in run R7
-- nm_single  base  test_single.py::test_x1  crashed R9 its last result: crashed in run R7
-- nm_single  base  test_single.py::test_x2  crashed R9 its last result: crashed in run R7
-- nm_single  base  test_single.py::test_x3  crashed R9 its last result: crashed in run R7
D4 nm_alone   base  {NO_RESULTS}             not_run R9 the target was not run
""".replace("{NO_RESULTS}", NO_RESULTS.replace(" ", "\x00"))

# E: nm_single under base and a plug-in variant with a Bazel package of its own, nm_lone on a GPU device.
E_MATRIX_YAML = MATRIX_YAML.split("devices:")[0] + """devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: The API untouched.
  mine:
    impl: nm_plugin.mine:Mine
    library: //nm_plugin:mine
    description: A plug-in variant in a package of its own.
suites:
  nm_single:
    variants: [base, mine]
    devices: [cpu]
  nm_gpu:
    directory: nm_lone
    variants: [base]
    devices: [cuda]
"""
PLUGIN_BUILD = 'py_library(name = "mine", srcs = ["mine.py"], deps = ["//tools/matrix:variants_base"], visibility = ["//visibility:public"])\n'
PLUGIN_PY = """from tools.matrix.variants.base import Base


class Mine(Base):
    \"\"\"The API untouched, from a package of its own.\"\"\"
"""
# E0: `report -- --config=gpu` on this CPU machine: the GPU cell runs and finds no GPU.
R10 = """
-- nm_single  base  test_single.py::test_x1  passed  R10
-- nm_single  base  test_single.py::test_x2  failed  R10 test_x2 always fails
-- nm_single  base  test_single.py::test_x3  passed  R10
-- nm_single  mine  test_single.py::test_x1  passed  R10
-- nm_single  mine  test_single.py::test_x2  failed  R10 test_x2 always fails
-- nm_single  mine  test_single.py::test_x3  passed  R10
-- nm_gpu     base  {NO_RESULTS}             error   R10 device 'cuda' is not available
""".replace("{NO_RESULTS}", NO_RESULTS.replace(" ", "\x00"))
# E1, E2: the plug-in's library broken (a data file it names is gone), then `report` without --config=gpu.
R11 = """
-- nm_single  base  test_single.py::test_x1  passed  R11
-- nm_single  base  test_single.py::test_x2  failed  R11 test_x2 always fails
-- nm_single  base  test_single.py::test_x3  passed  R11
E1 nm_single  mine  test_single.py::test_x1  error   R11 its target did not build in run R11: missing input file '//nm_plugin:gone.txt'; its last result: passed in run R10
E1 nm_single  mine  test_single.py::test_x2  error   R11 its target did not build in run R11: missing input file '//nm_plugin:gone.txt'; its last result: failed in run R10
E1 nm_single  mine  test_single.py::test_x3  error   R11 its target did not build in run R11: missing input file '//nm_plugin:gone.txt'; its last result: passed in run R10
E2 nm_gpu     base  {NO_RESULTS}             not_run R11 Bazel skipped the target in run R11: it needs a GPU
""".replace("{NO_RESULTS}", NO_RESULTS.replace(" ", "\x00"))


Key = tuple[str, str, str]  # (suite, variant, test)


def parse(table: str) -> dict[Key, tuple[str, str, str, str]]:
    """Key -> (case, status, run label, message part)."""
    out = {}
    for line in table.strip().splitlines():
        case, suite, variant, test, status, run, *part = line.split(maxsplit=6)
        out[(suite, variant, test.replace("\x00", " "))] = (case, status, run, part[0] if part else "")
    return out


class Drill:
    def __init__(self, root: Path, ws: Path, cli: list[str], env: dict[str, str]) -> None:
        self.root, self.ws, self.cli, self.env = root, ws, cli, env
        self.runs: dict[str, str] = {}  # step label -> the run_id of the report it wrote
        self.failures: dict[str, list[str]] = defaultdict(list)  # case -> what went wrong
        self.cases: set[str] = set()
        self.logs = 0

    def run(self, argv: list[str], expect_rc: int | None, case: str) -> str:
        self.logs += 1
        log = self.root / f"{self.logs:02d}.log"
        print(f"$ {' '.join(argv)}", flush=True)
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=self.ws, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=STEP_TIMEOUT_S)
        log.write_text(proc.stdout)
        print(f"  exit {proc.returncode} in {time.monotonic() - started:.0f}s (log: {log})", flush=True)
        if "Traceback (most recent call last)" in proc.stdout and argv[0] != "bazel":
            self.fail(case, f"a traceback reached the user:\n{proc.stdout[-3000:]}")
        if expect_rc is not None and proc.returncode != expect_rc:
            self.fail(case, f"`{' '.join(argv[-6:])}` exited {proc.returncode}, not {expect_rc}:\n{proc.stdout[-2500:]}")
        return proc.stdout

    def bazel(self, *args: str, case: str, expect_rc: int | None = None) -> str:
        return self.run(["bazel", "test", *args], expect_rc, case)

    def matrix(self, *args: str, case: str, expect_rc: int | None = 1) -> str:
        return self.run([*self.cli, *args], expect_rc, case)

    def fail(self, case: str, what: str) -> None:
        self.cases.add(case)
        self.failures[case].append(what)
        print(f"  FAIL {case}: {what[:400]}", flush=True)

    def check(self, label: str, out: str, table: str) -> None:
        """The report in `out` must hold exactly `table`'s records; its run is `label`."""
        path = self.ws / out / "compat.json"
        expected = parse(table)
        self.cases |= {case for case, *_ in expected.values()} - {"--"}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            for case in {case for case, *_ in expected.values()}:
                self.fail(case, f"{label}: no report ({e})")
            return
        self.runs[label] = data["run"]["run_id"]
        got = {(r["suite"], r["variant"], r["test"]): r for r in data["records"]}
        if len(got) != len(data["records"]):
            self.fail("--", f"{label}: duplicate records")
        for key, (case, status, run, part) in expected.items():
            record = got.get(key)
            if record is None:
                self.fail(case, f"{label}: {key} has no record (lost)")
                continue
            run_id = self.runs.get(run, f"<run of {run}>")
            part = self.with_run_ids(part)
            if (record["status"], record["run_id"]) != (status, run_id) or part not in record["message"]:
                self.fail(case, f"{label}: {key}: expected {status} from {run} ({run_id}) with {part!r}; "
                                f"got {record['status']} from {record['run_id']}: {record['message'][:300]!r}")  # fmt: skip
        for key in sorted(set(got) - set(expected)):
            case = next((c for (s, v, _t), (c, *_r) in expected.items() if (s, v) == key[:2] and c != "--"), "--")
            self.fail(case, f"{label}: unexpected record {key}: {got[key]['status']} {got[key]['message'][:200]!r}")
        # compat.md counts every record; compat.html has a row for every test.
        md = (self.ws / out / "compat.md").read_text()
        if f" · {len(expected)} cells · " not in md:
            self.fail("--", f"{label}: compat.md does not count {len(expected)} cells: {md.splitlines()[2][:300]!r}")
        html = (self.ws / out / "compat.html").read_text()
        data = json.loads(html.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0])
        rows = {(data["suites"][s], t) for s, t in zip(data["rows"]["suite"], data["rows"]["test"])}
        if rows != {(s, t) for s, _v, t in expected}:
            self.fail("--", f"{label}: compat.html's rows differ from the records: {sorted(rows ^ {(s, t) for s, _v, t in expected})[:10]}")

    def with_run_ids(self, text: str) -> str:
        """`text` with each `run <label>` spelled with that step's run_id."""
        for label in sorted(self.runs, key=len, reverse=True):  # R2n before R2
            text = text.replace(f"run {label}", f"run {self.runs[label]}")
        return text

    def expect_lines(self, case: str, out: str, *parts: str) -> None:
        self.cases.add(case)
        for part in map(self.with_run_ids, parts):
            if part not in out:
                self.fail(case, f"the output lacks {part!r}:\n{out[-2500:]}")


def truncate_half(path: Path) -> None:
    """Cut a file Bazel left (read-only) to half its size, as a full disk or a killed writer would."""
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(data[: len(data) // 2])


def main() -> int:
    started = time.monotonic()
    source = Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or die("run me with `bazel run //tools/matrix/drill:names_drill`"))
    env = nested_env()
    pyenv = project_pyenv()
    root = Path(tempfile.mkdtemp(prefix="matrix-names-drill-"))
    own_output_base = f"startup --output_base={root / 'ob'}\nstartup --max_idle_secs=300\n"
    ws = scratch_workspace(source, root / "ws", pyenv, MATRIX_YAML, sorted((HERE / "names_suites").iterdir()), own_output_base)
    (ws / "whole_base.yaml").write_text(WHOLE_BASE_YAML)
    d = Drill(root, ws, [str(pyenv / "venv" / "bin" / "python3"), str(ws / "tools" / "matrix" / "cli.py"), "--workspace", str(ws)], env)
    testlogs = ws / "bazel-testlogs"
    try:
        d.matrix("generate", case="--", expect_rc=0)
        # 1. The first full report.
        d.matrix("report", "--out", "reports", case="--")
        d.check("R1", "reports", R1)

        # A. Filtered runs, then report --no-run.
        d.bazel("//nm_whole:nm_whole_base_cpu", "--test_filter=test_one", case="A1", expect_rc=0)
        d.bazel("//nm_whole:nm_whole_other_cpu", "--test_filter=test_th*", case="A2", expect_rc=0)
        d.bazel("//nm_sharded:nm_sharded_base_cpu", "--test_filter=test_s1,test_s4", case="A3", expect_rc=0)
        d.bazel("//nm_files:nm_files_base_cpu/test_fa", "--test_filter=test_fa.py::test_fa1", case="A4", expect_rc=0)
        (ws / "reports_green").mkdir()
        shutil.copy(ws / "reports" / "compat.json", ws / "reports_green" / "compat.json")
        out = d.matrix("report", "--no-run", "--out", "reports", case="A1")
        d.check("R2", "reports", R2)
        d.expect_lines("A1", out, "Carried over: 11 record(s) from earlier runs (run R1: 11)", "6 of them failing")
        d.matrix("report", "--no-run", "--out", "reports_nohist", case="A5")
        d.check("R2n", "reports_nohist", R2N)
        # A6: only nm_whole's base cell, whose target passed its filtered run: still not green.
        out = d.matrix("--matrix", "whole_base.yaml", "report", "--no-run", "--out", "reports_green", case="A6")
        d.check("Rg", "reports_green", RG)
        d.expect_lines("A6", out, "Carried over: 4 record(s) from earlier runs (run R1: 4)", "2 of them failing")

        # B. Reruns, each followed by report --no-run where the testlogs changed.
        d.matrix("rerun", "--failed", "--suite", "nm_whole", "--suite", "nm_files", "--out", "reports", case="B1")
        d.check("R3", "reports", R3)
        d.matrix("report", "--no-run", "--out", "reports", case="B3")
        d.check("R4", "reports", R4)
        d.matrix("rerun", "--failed", "--suite", "nm_whole", "--out", "reports", "--", "--test_env=DRILL_FIX=1", case="B4")
        d.check("R5", "reports", R5)
        d.matrix("rerun", "--suite", "nm_sharded", "--tests", "test_s[23]", "--out", "reports", case="B5")
        d.check("R6", "reports", R6)

        # C. Broken outputs.
        d.bazel("//nm_sharded/...", "//nm_single/...", "//nm_files/...", "//nm_lone/...", "--test_env=DRILL_KILL=1", "--keep_going", case="C3", expect_rc=3)
        truncate_half(testlogs / "nm_files" / "nm_files_base_cpu" / "test_fa" / "test.outputs" / "outputs.zip")
        (testlogs / "nm_files" / "nm_files_base_cpu" / "test_fb" / "test.outputs" / "outputs.zip").unlink()
        lone = testlogs / "nm_lone" / "nm_lone_base_cpu"
        (lone / "test.outputs" / "outputs.zip").unlink()
        truncate_half(lone / "test.xml")
        out = d.matrix("report", "--no-run", "--out", "reports", case="C1")
        d.check("R7", "reports", R7)
        d.expect_lines("C1", out, "nm_files/nm_files_base_cpu/test_fa/test.outputs/outputs.zip: not a readable zip file", "results read from test.xml")
        d.matrix("report", "--no-run", "--out", "reports_c_nohist", case="C3")
        d.check("R7n", "reports_c_nohist", R7N)

        # D. matrix.yaml edits.
        (ws / "matrix.yaml").write_text(EDITED_MATRIX_YAML)
        (ws / "nm_files" / "test_fb.py").unlink()
        test_a = ws / "nm_whole" / "test_a.py"
        test_a.write_text(test_a.read_text().split("\n\ndef test_three")[0] + "\n")
        d.matrix("generate", case="D1", expect_rc=0)
        out = d.matrix("rerun", "--failed", "--suite", "nm_whole", "--suite", "nm_files", "--suite", "nm_alone", "--out", "reports", case="D1")
        d.check("R8", "reports", R8)
        d.expect_lines("D1", out, "dropped 7 record(s) of cells no longer in matrix.yaml: //nm_lone:nm_lone_base_cpu (2), //nm_whole:nm_whole_other_cpu (5)")
        d.expect_lines("D2", out, "dropped 2 record(s) of test files no longer in their suite: nm_files test_fb.py (2)")
        d.expect_lines("D3", out, "skipped 2 cell(s) new since the last report: //nm_files:nm_files_other_cpu, //nm_lone:nm_alone_base_cpu")
        d.expect_lines("D4", out, "//nm_lone:nm_alone_base_cpu")
        # The filtered rerun of nm_whole's base cell collected the whole target: test_three is gone from it.
        d.expect_lines("D5", out, "dropped 1 record(s) of tests their target no longer collects: nm_whole test_a.py::test_three (1)")
        d.bazel("//nm_whole:nm_whole_base_cpu", case="D5", expect_rc=3)
        d.matrix("report", "--no-run", "--out", "reports", case="D5")
        d.check("R9", "reports", R9)

        # E. Targets Bazel did not run in the report's own run, earlier testlogs on disk.
        (ws / "matrix.yaml").write_text(E_MATRIX_YAML)
        (ws / "nm_plugin").mkdir()
        (ws / "nm_plugin" / "BUILD.bazel").write_text(PLUGIN_BUILD)
        (ws / "nm_plugin" / "mine.py").write_text(PLUGIN_PY)
        d.matrix("generate", case="E1", expect_rc=0)
        d.matrix("report", "--out", "reports_e", "--", "--config=gpu", case="E1")
        d.check("R10", "reports_e", R10)
        (ws / "nm_plugin" / "BUILD.bazel").write_text(PLUGIN_BUILD.replace('srcs = ["mine.py"]', 'srcs = ["mine.py"], data = ["gone.txt"]'))
        out = d.matrix("report", "--out", "reports_e", case="E1")
        d.check("R11", "reports_e", R11)
        d.expect_lines("E1", out, "//nm_single:nm_single_mine_cpu: Bazel could not build it: missing input file '//nm_plugin:gone.txt'")
    finally:
        discard(root, ws, env)
    print(f"\nnames_drill: {len(d.cases)} cases in {time.monotonic() - started:.0f}s")
    for case in sorted(d.cases | set(d.failures)):
        print(f"  {case}: {'FAIL (' + str(len(d.failures[case])) + ')' if d.failures.get(case) else 'ok'}")
    if d.failures:
        print(f"\nnames_drill: FAIL: {sum(map(len, d.failures.values()))} failure(s) in cases {', '.join(sorted(d.failures))}")
        return 1
    print("names_drill: PASS")
    return 0


def die(message: str) -> NoReturn:
    print(f"names_drill: {message}", flush=True)
    sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
