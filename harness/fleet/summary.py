"""summary.csv and summary_models.csv of a fleet run: one block per device, a `device` column first.

Each job printed its own tables as it finished; the run directory's files summarise every device's rows
with the same code as a local run (harness.results.summary.summarise_frame), one device at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import safefs
from harness.results.layout import RESULTS_CSV, SUMMARY_CSV, SUMMARY_MODELS_CSV


def summarise_by_device(run_dir: Path) -> dict[str, Any] | None:
    """Write the two summary files of `run_dir`; run.json `summary` (`{"by_device": …}`), None without rows."""
    import pandas as pd

    from harness.results.summary import summarise_frame

    try:
        df = pd.read_csv(run_dir / RESULTS_CSV, keep_default_na=False, na_values=[""],
                         dtype={"talk_id": str, "device": str})  # fmt: skip
    except (OSError, pd.errors.EmptyDataError):
        return None
    if df.empty:
        return None
    per_talk, per_model, summary = [], [], {}
    for device in dict.fromkeys(df["device"]):
        result = summarise_frame(df[df["device"] == device])
        summary[device] = result.run_json
        per_talk.append(result.per_talk.assign(device=device))
        per_model.append(pd.DataFrame(result.per_model).assign(device=device))
    for frames, name in ((per_talk, SUMMARY_CSV), (per_model, SUMMARY_MODELS_CSV)):
        table = pd.concat(frames)
        table = table[["device", *[c for c in table.columns if c != "device"]]]
        # Never through a planted link (harness.safefs): a fresh temporary renamed over the file.
        safefs.write_atomic(run_dir / name, table.to_csv(index=False, float_format="%.6g"))
    return {"by_device": summary}


__all__ = ["summarise_by_device"]
