"""A report as a file a manager forwards: CSV (UTF-8 with a BOM, so spreadsheet programs
read Cyrillic and Chinese), XLSX with a native chart (XlsxWriter), and PDF with a chart
(matplotlib draws it, WeasyPrint lays out the page; a CJK font so Chinese prints). Each file
carries the report's parameters and the formulas it used."""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Callable
from typing import Any

from ccorch.supervision.reports import Column, Report

# Fonts the PDF asks for, in order: Latin and Cyrillic, then Chinese (Debian's
# fonts-wqy-zenhei, which the set-up installs).
PDF_FONTS = "'DejaVu Sans', 'WenQuanYi Zen Hei', 'Noto Sans CJK SC', sans-serif"


def _cell(column: Column, value: Any) -> Any:
    """A value as a person reads it in a file: ratios as percents, seconds rounded."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return "; ".join(f"{k or '-'}: {round(v)} s" for k, v in value.items())
    if column.unit == "%" and isinstance(value, int | float):
        return round(value * 100, 1)
    if column.unit == "s" and isinstance(value, int | float):
        return round(value, 1)
    return value


def _header(column: Column) -> str:
    return (
        f"{column.label} (%)"
        if column.unit == "%"
        else (f"{column.label} (s)" if column.unit == "s" else column.label)
    )


def _lines(report: Report) -> list[list[Any]]:
    rows = [[_header(c) for c in report.columns]]
    for r in [*report.rows, report.totals]:
        rows.append([_cell(c, r.get(c.key)) for c in report.columns])
    return rows


def to_csv(report: Report) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([report.title])
    for k, v in report.params.items():
        w.writerow([k, "" if v is None else v])
    w.writerow([])
    w.writerows(_lines(report))
    w.writerow([])
    for f in report.formulas:
        w.writerow([f])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(report: Report) -> bytes:
    import xlsxwriter  # imported when asked for: a node that never exports does not load it

    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    bold = book.add_format({"bold": True})
    percent = book.add_format({"num_format": "0.0"})
    sheet = book.add_worksheet("Report")
    sheet.write(0, 0, report.title, book.add_format({"bold": True, "font_size": 14}))
    row = 1
    for k, v in report.params.items():
        sheet.write(row, 0, k)
        sheet.write(row, 1, "" if v is None else str(v))
        row += 1
    row += 1
    first = row
    lines = _lines(report)
    for i, line in enumerate(lines):
        for j, value in enumerate(line):
            fmt = bold if i == 0 or i == len(lines) - 1 else None
            if isinstance(value, float) and report.columns[j].unit == "%":
                fmt = percent
            sheet.write(row, j, value, fmt)
        row += 1
    sheet.set_column(0, len(report.columns) - 1, 14)
    data_first, data_last = first + 1, first + len(report.rows)
    if report.chart is not None and report.rows:
        category, values = report.chart
        cat = next(i for i, c in enumerate(report.columns) if c.key == category)
        chart = book.add_chart({"type": "column"})
        for key in values:
            j = next(i for i, c in enumerate(report.columns) if c.key == key)
            chart.add_series(
                {
                    "name": ["Report", first, j],
                    "categories": ["Report", data_first, cat, data_last, cat],
                    "values": ["Report", data_first, j, data_last, j],
                }
            )
        chart.set_title({"name": report.title})
        chart.set_size({"width": 900, "height": 360})
        sheet.insert_chart(row + 1, 0, chart)
    notes = book.add_worksheet("Formulas")
    for i, f in enumerate(report.formulas):
        notes.write(i, 0, f)
    notes.set_column(0, 0, 120)
    book.close()
    return out.getvalue()


def _chart_png(report: Report) -> bytes | None:
    if report.chart is None or not report.rows:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: draw into memory
    from matplotlib import pyplot as plt

    category, values = report.chart
    labels = [str(r.get(category, "")) for r in report.rows][:96]
    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=110)
    width = 0.8 / max(1, len(values))
    for i, key in enumerate(values):
        column = next(c for c in report.columns if c.key == key)
        ys = [float(r.get(key) or 0) for r in report.rows][:96]
        ax.bar([x + i * width for x in range(len(ys))], ys, width, label=column.label)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.legend(fontsize=8)
    ax.set_title(report.title, fontsize=10)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def to_pdf(report: Report) -> bytes:
    import weasyprint  # imported when asked for (it loads Pango)

    picture = _chart_png(report)
    esc: Callable[[Any], str] = lambda v: html.escape(str(v))  # noqa: E731
    lines = _lines(report)
    head = "".join(f"<th>{esc(h)}</th>" for h in lines[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(v)}</td>" for v in line) + "</tr>" for line in lines[1:]
    )
    params = "".join(
        f"<li>{esc(k)}: {esc('' if v is None else v)}</li>" for k, v in report.params.items()
    )
    formulas = "".join(f"<li>{esc(f)}</li>" for f in report.formulas)
    chart = (
        f'<img src="data:image/png;base64,{base64.b64encode(picture).decode()}" />'
        if picture
        else ""
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><style>
      @page {{ size: A4 landscape; margin: 12mm; }}
      body {{ font-family: {PDF_FONTS}; font-size: 8pt; }}
      h1 {{ font-size: 14pt; margin: 0 0 4pt; }}
      table {{ border-collapse: collapse; width: 100%; }}
      th, td {{ border: 0.5pt solid #999; padding: 1.5pt 3pt; text-align: left; }}
      tr:last-child td {{ font-weight: bold; }}
      img {{ width: 100%; }}
    </style></head><body>
      <h1>{esc(report.title)}</h1><ul>{params}</ul>{chart}
      <table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
      <h2>Formulas</h2><ul>{formulas}</ul>
    </body></html>"""
    pdf: bytes = weasyprint.HTML(string=page).write_pdf()
    return pdf


FORMATS: dict[str, tuple[str, str, Callable[[Report], bytes]]] = {
    "csv": ("text/csv; charset=utf-8", "csv", to_csv),
    "xlsx": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
        to_xlsx,
    ),
    "pdf": ("application/pdf", "pdf", to_pdf),
}

__all__ = ["FORMATS", "to_csv", "to_pdf", "to_xlsx"]
