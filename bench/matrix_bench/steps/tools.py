"""Step 5, tools: the generator and the report renderers at their benchmark sizes (bench_generate.measure,
bench_report.run_once), the same tables as those scripts print."""

from __future__ import annotations

from matrix_bench.context import Context
from matrix_bench.summary import fmt_s, log


def tools(ctx: Context) -> None:
    log("\n== 5. tools: generator and report renderers (bench_generate / bench_report) ==")
    import bench_generate
    import bench_report

    log("generator: load + validate + write BUILD files")
    log(f"{'targets':>8} {'seconds':>9} {'growth':>8}")
    previous = None
    for size in bench_generate.SIZES:
        cells, seconds = bench_generate.measure(size)
        log(f"{cells:>8} {seconds:>9.3f} {f'{seconds / previous:.1f}x' if previous else '-':>8}")
        ctx.results.add(f"generate {cells} targets", fmt_s(seconds), "bench_generate.measure")
        previous = seconds
    log("report renderers: write_reports (json+md+html) + terminal_summary")
    log(f"{'records':>9} {'write_reports':>14} {'terminal':>9} {'total':>8} {'growth':>7} {'cpu main':>9} {'cpu child':>10} {'MB':>6}")
    previous = None
    for n in bench_report.SIZES:
        write_s, term_s, cpu_main, cpu_child, size = bench_report.run_once(bench_report.make_records(n), None)
        total = write_s + term_s
        log(
            f"{n:>9} {write_s:>14.3f} {term_s:>9.3f} {total:>8.3f} {f'{total / previous:.2f}x' if previous else '-':>7} {cpu_main:>9.3f} {cpu_child:>10.3f} {size:>6.1f}"
        )
        ctx.results.add(
            f"report {n} records", fmt_s(total), f"write_reports {write_s:.2f} s + terminal {term_s:.2f} s (bench_report.run_once)"
        )
        previous = total
