"""The order of a run's samples, decided before anything runs.

Why a plan: on a shared or thermally limited machine speed drifts over minutes. If each model ran to
completion, talks in order and repeats back to back, that drift would line up with the model, the talk
and the repeat index, and a comparison would measure the clock. So the parent fixes the whole order up
front (the worker receives one sample at a time) and records it: `sample_seq` in every row is the
sample's index in this plan, and run.json keeps the plan.

Each model x config is one group, run by its own worker (a config is a set of engine settings the
model is loaded with). Orders (documented in docs/running.md, "Sweeps"):
- default (`round-robin`): models one after another. Within a model, repeats go round-robin over talks
  (talk1 r0, talk2 r0, ..., talk1 r1, ...) and, when settings are swept, the model's configs alternate at
  every step (all of its workers loaded at once), so drift does not line up with a setting either.
- `interleaved` (`--interleave`): every model x config is loaded at once and all groups alternate at
  every step, for A/B comparisons of models on noisy machines.
In both, each step rotates the order of the alternating groups by one, so every group takes every position
equally often (a cyclic Latin square: AB, BA, AB, ...) and drift cannot favour whichever runs first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.corpus import Talk
from harness.errors import unknown
from harness.params import Config, describe_config, expand


def default_config() -> Config:
    """The one config of a run that sweeps nothing (every setting at its default)."""
    return expand({})[0]


@dataclass(frozen=True)
class PlannedSample:
    """One sample of the plan: which model x config summarises which document, which repeat, and when."""

    seq: int  # global order index: the row's sample_seq
    model: str
    config: Config
    talk: Talk
    repeat: int

    @property
    def talk_id(self) -> str:
        return self.talk.id

    @property
    def group(self) -> tuple[str, str]:
        """(model, config_id): one worker, one row context; what summaries and comparisons aggregate over."""
        return (self.model, self.config.config_id)

    def record(self) -> list[Any]:
        return [self.seq, self.model, self.config.config_id, self.talk_id, self.repeat]


def _rotate(items: Sequence[Any], by: int) -> list[Any]:
    if not items:
        return []
    k = by % len(items)
    return [*items[k:], *items[:k]]


def select_talks(talks: Sequence[Talk], wanted: Sequence[str]) -> list[Talk]:
    """The documents `--talks` names, in its order (all of them when it names none); a typo answers "did you
    mean"."""
    if not wanted:
        return list(talks)
    by_id = {t.id: t for t in talks}
    for name in wanted:
        if name not in by_id:
            raise unknown("talk", name, by_id)
    return [by_id[name] for name in wanted]


def plan(
    models: Sequence[str],
    configs: Sequence[Config],
    talks: Sequence[Talk],
    repeats: int,
    interleave: bool = False,
    skip: frozenset[tuple[str, str]] = frozenset(),
) -> list[PlannedSample]:
    """Every sample of the run, in the order it runs (see the module docstring). Groups (model, config_id) in
    `skip` cannot run here and are left out; `seq` numbers what is left."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    rounds = [(rep, talk) for rep in range(repeats) for talk in talks]
    groups = [(m, c) for m in models for c in configs or [default_config()]]
    blocks = [groups] if interleave else [[(m, c) for c in configs or [default_config()]] for m in models]
    out: list[PlannedSample] = []
    for block in blocks:
        for step, (rep, talk) in enumerate(rounds):
            for model, config in _rotate(block, step):
                if (model, config.config_id) not in skip:
                    out.append(PlannedSample(len(out), model, config, talk, rep))
    return out


def order_mode(interleave: bool) -> str:
    return "interleaved" if interleave else "round-robin"


def plan_record(samples: Sequence[PlannedSample], interleave: bool) -> dict[str, Any]:
    """For run.json: the mode and every sample as [sample_seq, model, config_id, talk_id, repeat]."""
    return {
        "mode": order_mode(interleave),
        "columns": ["sample_seq", "model", "config_id", "talk_id", "repeat"],
        "samples": [s.record() for s in samples],
    }


# --- --dry-run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None when nothing in the earlier run matches
    notes: tuple[str, ...]


def estimate(
    samples: Sequence[PlannedSample],
    rows: Sequence[Mapping[str, Any]],
    warmup: int = 1,
) -> Estimate:
    """Time the plan would take, from an earlier run's rows: per sample the mean e2e_s of the same model x
    config there (else of the same model, scaled by max_new_tokens when the earlier rows record it); per
    worker its mean load_s plus the warm-ups."""
    ok = [r for r in rows if str(r.get("status", "ok")) == "ok" and _num(r.get("e2e_s")) is not None]
    by_group: dict[tuple[str, str], list[float]] = {}
    by_model: dict[str, list[tuple[float, float | None]]] = {}
    load: dict[str, list[float]] = {}
    for r in ok:
        e2e = _num(r.get("e2e_s"))
        assert e2e is not None
        model = str(r.get("model"))
        if r.get("config_id"):
            by_group.setdefault((model, str(r["config_id"])), []).append(e2e)
        by_model.setdefault(model, []).append((e2e, _num(r.get("max_new_tokens"))))
        if _num(r.get("load_s")) is not None:
            load.setdefault(model, []).append(_num(r.get("load_s")) or 0.0)
    total = 0.0
    scaled: set[str] = set()
    unknown: set[str] = set()
    per_model_sample: dict[str, float] = {}
    for s in samples:
        group = by_group.get(s.group)
        if group:
            secs = sum(group) / len(group)
        elif s.model in by_model:
            pairs = by_model[s.model]
            secs = sum(e * _scale(cap, s.config.get("max_new_tokens")) for e, cap in pairs) / len(pairs)
            scaled.add(s.model)
        else:
            unknown.add(s.model)
            continue
        per_model_sample.setdefault(s.model, secs)
        total += secs
    for model, _config_id in {s.group for s in samples}:  # one worker per model x config
        if model in load:
            total += sum(load[model]) / len(load[model])
        total += warmup * per_model_sample.get(model, 0.0)
    notes: list[str] = []
    if scaled:
        notes.append(
            f"no rows of the same config for {', '.join(sorted(scaled))}: scaled that model's mean by max_new_tokens"
        )
    if unknown:
        notes.append(f"no rows at all for {', '.join(sorted(unknown))}: not in the estimate")
    matched = len(unknown) < len({s.model for s in samples})
    return Estimate(total if matched else None, tuple(notes))


def _scale(earlier_cap: float | None, cap: Any) -> float:
    if not earlier_cap or not isinstance(cap, int | float):
        return 1.0
    return float(cap) / earlier_cap


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def describe_plan(
    samples: Sequence[PlannedSample],
    models: Sequence[str],
    configs: Sequence[Config],
    talks: Sequence[str],
    repeats: int,
    interleave: bool,
    estimate_: Estimate | None = None,
    skipped: Sequence[str] = (),
    preview: int = 12,
) -> str:
    """The --dry-run text: counts, the configs with their ids, the first samples in order, the estimate."""
    workers = len({s.group for s in samples})
    lines = [
        f"plan: {len(configs)} config(s) x {len(models)} model(s) x {len(talks)} document(s) x {repeats} "
        f"repeat(s) = {len(samples)} samples, {workers} worker(s), order {order_mode(interleave)}"
    ]
    for c in configs:
        lines.append(f"  config {c.config_id}: {describe_config(c) or '(defaults)'}")
    for line in skipped:
        lines.append(f"  skipped: {line}")
    lines.append(f"order (first {min(preview, len(samples))} of {len(samples)}):")
    for s in samples[:preview]:
        label = f" [{s.config.label}]" if s.config.label else ""
        lines.append(f"  {s.seq:>4}  {s.model}{label}  {s.talk_id} r{s.repeat}")
    if estimate_ is not None:
        if estimate_.seconds is None:
            lines.append("estimated time: unknown (no matching rows in the earlier run)")
        else:
            lines.append(f"estimated time: ~{_duration(estimate_.seconds)}")
        lines += [f"  note: {n}" for n in estimate_.notes]
    lines.append("dry run: nothing was run")
    return "\n".join(lines)


__all__ = [
    "Estimate",
    "PlannedSample",
    "default_config",
    "describe_plan",
    "estimate",
    "order_mode",
    "plan",
    "plan_record",
    "select_talks",
]
