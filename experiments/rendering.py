"""Renderings of an experiment report: a plain-text table for the terminal, an HTML page with inline SVG charts.

Presentation only: the numbers and the decision come from :mod:`experiments.report`.
"""

from __future__ import annotations

import html
import math

import numpy as np

from experiments.report import Comparison, Histogram, Report, ShadowSummary

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _variant_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "model", "frames", "error rate", "infer p50/p95/p99 ms", "e2e p95 ms", "det/frame",
              "confidence", "crossings/cam-h"]
    rows = []
    for v in report.variants:
        infer, e2e = v.metrics["infer_ms"], v.metrics["e2e_ms"]
        det, conf, cross = (v.metrics[m] for m in ("detections_per_frame", "mean_confidence",
                                                   "crossings_per_camera_hour"))
        rows.append([
            v.variant + (" (control)" if v.variant == report.control else ""), v.model, str(v.frames),
            "-" if v.error_rate is None else f"{v.error_rate:.2%}",
            "-" if infer is None else f"{infer.p50:.1f}/{infer.p95:.1f}/{infer.p99:.1f}",
            "-" if e2e is None else f"{e2e.p95:.1f}",
            "-" if det is None else f"{det.mean:.2f}", "-" if conf is None else f"{conf.mean:.3f}",
            "-" if cross is None else f"{cross.mean:.1f}",
        ])
    return header, rows


def _comparison_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "control", "candidate", "diff", f"{1 - comparison.alpha:.1%} CI", "relative", "Welch p",
              "Mann-Whitney p", "outcome"]
    rows = []
    if comparison.errors is not None:
        e = comparison.errors
        rows.append(["error rate", f"{e.control_rate:.2%}", f"{e.candidate_rate:.2%}", f"{e.difference:+.2%}",
                     f"{e.ci_low:+.2%} .. {e.ci_high:+.2%}", "-", f"{_fmt(e.p_value)} ({e.method})", "-", "-"])
    for metric, m in comparison.metrics.items():
        w = m.welch
        rows.append([metric, _fmt(w.control_mean, 4), _fmt(w.candidate_mean, 4), f"{w.difference:+.3g}",
                     f"{w.ci_low:+.3g} .. {w.ci_high:+.3g}",
                     "-" if m.relative_difference is None else f"{m.relative_difference:+.1%}",
                     _fmt(w.p_value), _fmt(m.mann_whitney.p_value), m.outcome])
    return header, rows


def _headline(report: Report) -> str:
    return f"PROMOTE {report.promote}" if report.decision == "promote" else report.decision.upper()


def render_table(report: Report) -> str:
    """The report as plain text for a terminal."""
    lines = [f"Experiment {report.experiment}: control {report.control}, alpha {report.alpha:g}, "
             f"primary metric {report.primary_metric}",
             f"Decision: {_headline(report)}: {report.reason}", ""]
    lines += _table(*_variant_rows(report))
    for comparison in report.comparisons:
        lines += ["", f"{comparison.candidate} vs {report.control}: {comparison.verdict.upper()}: {comparison.reason}"]
        lines += _table(*_comparison_rows(comparison))
    if report.shadow is not None:
        lines += ["", *_shadow_lines(report.shadow)]
    if report.caveats:
        lines += ["", "Caveats:"] + [f"- {caveat}" for caveat in report.caveats]
    return "\n".join(lines) + "\n"


def _shadow_lines(shadow: ShadowSummary) -> list[str]:
    lines = [f"Shadow: {shadow.candidate} also ran on {shadow.pairs} control frames (paired, same frames)"]
    if shadow.box_agreement is not None and shadow.equal_count_share is not None:
        lines.append(f"  box agreement F1 {shadow.box_agreement:.3f}; same box count on "
                     f"{shadow.equal_count_share:.1%} of frames")
    for label, test in (("detections/frame", shadow.detections), ("infer ms", shadow.infer_ms)):
        if test is not None:
            lines.append(f"  {label} {shadow.candidate} - control: {test.mean_difference:+.3f} "
                         f"[{test.ci_low:+.3f}, {test.ci_high:+.3f}], paired t p={test.t_p_value:.3g}, "
                         f"Wilcoxon p={test.wilcoxon_p_value:.3g}")
    return lines


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def svg_histogram(histogram: Histogram, width: int = 640, height: int = 240) -> str:
    """Overlaid step outlines of each variant's share of values per bin, plus a legend and axis labels."""
    left, right, top, bottom = 50, 10, 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    shares = {name: np.asarray(c, dtype=np.float64) / max(sum(c), 1) for name, c in histogram.counts.items()}
    peak = max(float(s.max()) for s in shares.values()) or 1.0
    edges = histogram.edges
    span = edges[-1] - edges[0]

    def x(value: float) -> float:
        return left + (value - edges[0]) / span * plot_w

    def y(share: float) -> float:
        return top + plot_h - share / peak * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="histogram of {html.escape(histogram.metric)}">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>']
    for index, (name, share) in enumerate(shares.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        points = [f"{x(edges[0]):.1f},{y(0):.1f}"]
        for i, value in enumerate(share):
            points += [f"{x(edges[i]):.1f},{y(value):.1f}", f"{x(edges[i + 1]):.1f},{y(value):.1f}"]
        points.append(f"{x(edges[-1]):.1f},{y(0):.1f}")
        parts.append(f'<polyline fill="{colour}" fill-opacity="0.15" stroke="{colour}" stroke-width="1.5" '
                     f'points="{" ".join(points)}"/>')
        parts.append(f'<text x="{left + plot_w - 120}" y="{top + 14 + 16 * index}" fill="{colour}" '
                     f'font-size="12">{html.escape(name)}</text>')
    parts += [f'<text x="{left}" y="{height - 22}" font-size="11">{edges[0]:.4g}</text>',
              f'<text x="{left + plot_w}" y="{height - 22}" font-size="11" text-anchor="end">{edges[-1]:.4g}</text>',
              f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="12" text-anchor="middle">'
              f'{html.escape(histogram.metric)} (share of values per bin)</text>',
              f'<text x="{left - 4}" y="{top + 10}" font-size="11" text-anchor="end">{peak:.0%}</text>',
              "</svg>"]
    return "".join(parts)


def svg_boxplot(histogram: Histogram, width: int = 640, row_height: int = 34) -> str:
    """One horizontal box per variant (whiskers p5..p95, box p25..p75, median line) on the histogram's scale."""
    left, right = 110, 10
    plot_w = width - left - right
    height = row_height * len(histogram.boxes) + 24
    low, high = histogram.edges[0], histogram.edges[-1]
    for box in histogram.boxes.values():
        low, high = min(low, box.p5), max(high, box.p95)
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return left + (value - low) / span * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="box plot of {html.escape(histogram.metric)}">']
    for index, (name, box) in enumerate(histogram.boxes.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        mid = row_height * index + row_height / 2
        parts += [
            f'<text x="{left - 6}" y="{mid + 4:.1f}" font-size="12" text-anchor="end">{html.escape(name)}</text>',
            f'<line x1="{x(box.p5):.1f}" y1="{mid:.1f}" x2="{x(box.p95):.1f}" y2="{mid:.1f}" stroke="{colour}"/>',
            f'<rect x="{x(box.p25):.1f}" y="{mid - 10:.1f}" width="{max(x(box.p75) - x(box.p25), 1):.1f}" '
            f'height="20" fill="{colour}" fill-opacity="0.25" stroke="{colour}"/>',
            f'<line x1="{x(box.p50):.1f}" y1="{mid - 10:.1f}" x2="{x(box.p50):.1f}" y2="{mid + 10:.1f}" '
            f'stroke="{colour}" stroke-width="2"/>',
        ]
    parts += [f'<text x="{left}" y="{height - 4}" font-size="11">{low:.4g}</text>',
              f'<text x="{left + plot_w}" y="{height - 4}" font-size="11" text-anchor="end">{high:.4g}</text>',
              "</svg>"]
    return "".join(parts)


def render_html(report: Report) -> str:
    """A self-contained HTML page: decision, tables, and inline SVG histograms and box plots."""
    title = f"Experiment {report.experiment}"
    sections = [f"<h1>{html.escape(title)}</h1>",
                f"<p class=\"decision {report.decision.replace(' ', '-')}\"><strong>{html.escape(_headline(report))}"
                f"</strong>: {html.escape(report.reason)}</p>",
                f"<p>Control {html.escape(report.control)}, alpha {report.alpha:g}, primary metric "
                f"{html.escape(report.primary_metric)}.</p>",
                "<h2>Variants</h2>", _html_table(*_variant_rows(report))]
    for comparison in report.comparisons:
        sections += [f"<h2>{html.escape(comparison.candidate)} vs {html.escape(report.control)}: "
                     f"{html.escape(comparison.verdict)}</h2>", f"<p>{html.escape(comparison.reason)}</p>",
                     _html_table(*_comparison_rows(comparison))]
    if report.caveats:
        sections += ["<h2>Caveats</h2>", "<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in report.caveats)
                     + "</ul>"]
    sections.append("<h2>Distributions</h2>")
    for histogram in report.histograms:
        sections += [f"<h3>{html.escape(histogram.metric)}</h3>", svg_histogram(histogram), svg_boxplot(histogram)]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
             ".decision{font-size:1.2em}.promote{color:#1a7f37}.keep-control{color:#b42318}"
             ".not-enough-data{color:#8a6d00}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n")
