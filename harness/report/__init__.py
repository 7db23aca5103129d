"""Compare and report on finished runs.

load.py reads run directories; compare.py/compare_output.py back `harness compare`; data.py, plots.py,
render.py and build.py back `harness report`. Kept import-light: matplotlib loads only for reports.
"""
