"""What the benchmark prints: progress lines as it goes, and the summary table at the end."""

from __future__ import annotations

from dataclasses import dataclass, field


def log(message: str = "") -> None:
    print(message, flush=True)


def fmt_s(s: float) -> str:
    return f"{s:.1f} s" if s >= 10 else f"{s:.2f} s"


@dataclass
class Results:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (measurement, value, note)
    not_measured: list[str] = field(default_factory=list)

    def add(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))

    def missing(self, what: str) -> None:
        log(f"  NOT MEASURED: {what}")
        self.not_measured.append(what)

    def print(self) -> None:
        width = min(max([len(r[0]) for r in self.rows] + [20]), 64)
        vwidth = min(max([len(r[1]) for r in self.rows] + [8]), 12)
        log("\n" + "=" * 100 + "\nbench_matrix summary\n" + "=" * 100)
        for what, value, note in self.rows:
            log(f"{what:<{width}}  {value:>{vwidth}}  {note}")
        if self.not_measured:
            log("\nnot measured:")
            for m in self.not_measured:
                log(f"  - {m}")
