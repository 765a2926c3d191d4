"""The benchmark runner and its report (Markdown + JSON + PNG)."""

from .runner import format_table, run_bench

__all__ = ["run_bench", "format_table"]
