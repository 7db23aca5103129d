"""Sample order: round-robin repeats, shared workers for generation settings, interleaving, estimates."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.corpus import Talk
from harness.params import expand
from harness.run.plan import describe_plan, estimate, plan_record
from harness.run.plan import plan as plan_talks

TALKS = ["t1", "t2", "t3"]


def plan(models: list[str], configs: list, talk_ids: list[str], **kwargs: object) -> list:
    """The plan over documents named `talk_ids` (their text does not matter to the order)."""
    return plan_talks(models, configs, [Talk(t, "", ()) for t in talk_ids], **kwargs)  # type: ignore[arg-type]


def _order(samples: list) -> list[tuple]:
    return [(s.model, s.config.label, s.talk_id, s.repeat) for s in samples]


def test_default_order_is_round_robin_over_talks_per_model() -> None:
    (config,) = expand({})
    samples = plan(["a", "b"], [config], TALKS, repeats=2)
    assert [s.seq for s in samples] == list(range(12))
    assert [(s.model, s.talk_id, s.repeat) for s in samples[:6]] == [
        ("a", "t1", 0), ("a", "t2", 0), ("a", "t3", 0), ("a", "t1", 1), ("a", "t2", 1), ("a", "t3", 1),
    ]
    assert {s.model for s in samples[6:]} == {"b"}


def test_a_models_configs_alternate_by_default_models_in_turn() -> None:
    configs = expand({"threads": [1, 2]})
    samples = plan(["a", "b"], configs, ["t1", "t2"], repeats=1)
    assert _order(samples) == [
        ("a", "threads=1", "t1", 0),
        ("a", "threads=2", "t1", 0),
        ("a", "threads=2", "t2", 0),
        ("a", "threads=1", "t2", 0),
        ("b", "threads=1", "t1", 0),
        ("b", "threads=2", "t1", 0),
        ("b", "threads=2", "t2", 0),
        ("b", "threads=1", "t2", 0),
    ]


def test_interleave_alternates_models_and_rotates_who_goes_first() -> None:
    (config,) = expand({})
    samples = plan(["a", "b"], [config], ["t1", "t2"], repeats=2, interleave=True)
    assert [(s.model, s.talk_id, s.repeat) for s in samples] == [
        ("a", "t1", 0), ("b", "t1", 0),
        ("b", "t2", 0), ("a", "t2", 0),
        ("a", "t1", 1), ("b", "t1", 1),
        ("b", "t2", 1), ("a", "t2", 1),
    ]


def test_interleave_balances_positions_across_groups() -> None:
    configs = expand({"threads": [1, 2, 4]})
    samples = plan(["a"], configs, TALKS, repeats=2, interleave=True)
    first_of_step = Counter(samples[i].config["threads"] for i in range(0, len(samples), 3))
    assert set(first_of_step.values()) == {2}  # 6 steps, each of 3 groups goes first twice


@pytest.mark.parametrize("interleave", [False, True])
def test_every_sample_planned_exactly_once(interleave: bool) -> None:
    configs = expand({"threads": [1, 2], "max_new_tokens": [16, 32]})
    samples = plan(["a", "b"], configs, TALKS, repeats=3, interleave=interleave)
    keys = [(s.model, s.config.config_id, s.talk_id, s.repeat) for s in samples]
    assert len(keys) == len(set(keys)) == 2 * 4 * 3 * 3


def test_plan_record_lists_the_order() -> None:
    (config,) = expand({})
    samples = plan(["a"], [config], ["t1"], repeats=2)
    record = plan_record(samples, interleave=False)
    assert record["mode"] == "round-robin"
    assert record["samples"] == [[0, "a", config.config_id, "t1", 0], [1, "a", config.config_id, "t1", 1]]


def test_estimate_from_earlier_rows() -> None:
    configs = expand({"max_new_tokens": [16, 32]})
    samples = plan(["a"], configs, ["t1"], repeats=1)
    rows = [
        {"model": "a", "config_id": configs[0].config_id, "e2e_s": "2.0", "load_s": "1.0", "status": "ok"},
        {"model": "a", "config_id": configs[0].config_id, "e2e_s": "4.0", "load_s": "1.0", "status": "ok"},
        {"model": "a", "config_id": "other", "e2e_s": "99", "status": "error"},
    ]
    est = estimate(samples, rows, warmup=0)
    # config 16: mean 3.0 s; config 32: model mean 3.0 s scaled by 32/16 (no max_new_tokens in rows: x1)
    assert est.seconds == pytest.approx(3.0 + 3.0 + 2 * 1.0)  # one load per model x config
    assert est.notes and "scaled" in est.notes[0]
    assert estimate(samples, [], warmup=0).seconds is None


def test_describe_plan_counts_and_preview() -> None:
    configs = expand({"threads": [1, 2]})
    samples = plan(["a"], configs, TALKS, repeats=2)
    text = describe_plan(samples, ["a"], configs, TALKS, 2, False)
    assert "2 config(s) x 1 model(s) x 3 document(s) x 2 repeat(s) = 12 samples, 2 worker(s)" in text
    assert configs[0].config_id in text and "threads=1" in text
    assert text.endswith("dry run: nothing was run")
