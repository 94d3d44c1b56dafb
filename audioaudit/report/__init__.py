"""The listening report: a static HTML folder to hear suspected copies beside their sources.

``render_report(run_dirs, out, ReportOptions(...))`` for audit runs,
``render_duplicates(index_dir, out, PageOptions(...))`` for the duplicate groups of a
training corpus. Heavy libraries (pandas, matplotlib, jinja2, soundfile) are imported
inside the functions that use them.
"""
from audioaudit.report.audit_page import render_report
from audioaudit.report.duplicates_page import render_duplicates
from audioaudit.report.options import PageOptions, ReportOptions

__all__ = ["render_report", "render_duplicates", "PageOptions", "ReportOptions"]
