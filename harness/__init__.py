"""harness: an on-device LLM summarisation benchmark.

Data flow, mirrored by the package tree:
corpus -> prompts -> backends (in a worker launched by launchers/) -> trackers -> scoring -> results
-> compare / report.
"""

__version__ = "0.1.0"
