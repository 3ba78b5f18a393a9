"""`list`: the matrix cells (label, Bazel targets, shard counts, expectation counts, tags)."""

from __future__ import annotations

from tools.matrix.config import Cell


def table(cells: list[Cell]) -> str:
    rows = [("cell", "targets", "shards", "xfail", "skip", "tags")]
    for c in cells:
        shards = str(sum(t.shard_count for t in c.targets))
        rows.append((c.label, str(len(c.targets)), shards, str(len(c.expectations.xfail)), str(len(c.expectations.skip)), ",".join(c.tags)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    lines.append(f"{len(cells)} cell(s)")
    return "\n".join(lines)
