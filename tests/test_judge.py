"""`harness judge` against fake OpenAI servers on 127.0.0.1: a sensible judge, a position-biased one, malformed
JSON, refusals, HTTP errors and timeouts; then the judge columns in compare and report.

The fake judges read the prompt they are sent: for a pairwise prompt the "sensible" judge prefers the summary
sharing more characters with the talk, which is exactly what the reference probe needs to pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.judge.client import JudgeClient, JudgeSettings
from harness.judge.columns import JUDGEMENTS_JSONL, read_judgements
from harness.judge.probes import wilson
from harness.judge.rubric import ParseError, ask, parse_scores, parse_winner
from harness.results.record import RunRecord
from tests.fakeserver import Reply, closed_port, fake_server, json_reply
from tests.runfactory import make_run

CHAT = ("POST", "/v1/chat/completions")
MODELS = ("GET", "/v1/models")
TALKS = ("t1", "t2", "t3")
SOURCES = {
    "t1": "阿里巴巴发布了通义千问模型，参数规模很大。",
    "t2": "高通介绍了手机上的神经网络处理器和功耗。",
    "t3": "华为讲述了鸿蒙系统与端侧推理框架。",
}
REFERENCES = {
    "t1": ["阿里巴巴发布通义千问模型。"],
    "t2": ["高通介绍手机神经网络处理器。"],
    "t3": ["华为讲述鸿蒙与端侧推理。"],
}


def answer(text: str) -> Reply:
    return json_reply({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})


def _between(prompt: str, head: str) -> str:
    m = re.search(re.escape(head) + r"[^\n]*\n<<<\n(.*?)\n>>>", prompt, re.DOTALL)
    assert m, f"no {head!r} block in the prompt"
    return m.group(1)


def _overlap(a: str, b: str) -> int:
    return len(set(a) & set(b))


def sensible(body: dict[str, Any]) -> Reply:
    prompt = body["messages"][0]["content"]
    talk = _between(prompt, "Talk:")
    if "Summary A:" in prompt:
        a, b = _between(prompt, "Summary A:"), _between(prompt, "Summary B:")
        oa, ob = _overlap(a, talk), _overlap(b, talk)
        return answer(json.dumps({"winner": "A" if oa > ob else "B" if ob > oa else "tie"}))
    summary = _between(prompt, "Summary")
    good = 5 if "large" in summary else 3
    return answer(json.dumps({"faithfulness": good, "coverage": good, "fluency": 4, "conciseness": 4}))


def biased(body: dict[str, Any]) -> Reply:
    if "Summary A:" in body["messages"][0]["content"]:
        return answer('{"winner": "A"}')
    return sensible(body)


def models_route(name: str = "judge") -> Reply:
    return json_reply({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "me"}]})


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    predictions = {(m, t): f"{m} 说：{SOURCES[t][:8]}" for m in ("m-small", "m-large") for t in TALKS}
    run = make_run(tmp_path, talks=TALKS, repeats=2, predictions=predictions, references=REFERENCES)
    lines = [json.loads(x) for x in (run / "summaries.jsonl").read_text(encoding="utf-8").splitlines()]
    for rec in lines:
        rec["source"] = SOURCES[rec["talk_id"]]
    (run / "summaries.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), "utf-8")
    return run


def judge(run: Path, url: str, *extra: str) -> int:
    return main(["judge", str(run), "--judge-endpoint", url, "--judge-model", "judge", "--timeout", "5", *extra])


# --- parsing -------------------------------------------------------------------------------------------
def test_strict_json_parsing() -> None:
    assert parse_scores('{"faithfulness": 5, "coverage": 4, "fluency": 3, "conciseness": 2}')["coverage"] == 4
    assert parse_scores('```json\n{"faithfulness": 1, "coverage": 1, "fluency": 1, "conciseness": 1}\n```')
    assert parse_winner(' {"winner": "tie"} ') == "tie"
    for bad in (
        'Scores: {"faithfulness": 5, "coverage": 4, "fluency": 3, "conciseness": 2}',  # prose around it
        '{"faithfulness": 6, "coverage": 4, "fluency": 3, "conciseness": 2}',  # out of range
        '{"faithfulness": "5", "coverage": 4, "fluency": 3, "conciseness": 2}',  # a string
        '{"faithfulness": 5, "coverage": 4, "fluency": 3}',  # a key missing
        "[5, 4, 3, 2]",
        "",
    ):
        with pytest.raises(ParseError):
            parse_scores(bad)
    with pytest.raises(ParseError):
        parse_winner('{"winner": "C"}')


def test_wilson_interval_brackets_the_rate() -> None:
    low, high = wilson(4, 4)
    assert low is not None and high is not None
    assert 0.4 < low < 1.0 and high == pytest.approx(1.0)
    assert wilson(0, 0) == (None, None)


def test_malformed_answer_is_retried_once_and_raw_output_kept() -> None:
    def flaky(body: dict[str, Any]) -> Reply:
        if len(body["messages"]) == 1:
            return answer("Sure! The summary is good, I'd give it a 4.")
        assert "not the JSON object" in body["messages"][-1]["content"]
        return answer('{"faithfulness": 4, "coverage": 4, "fluency": 4, "conciseness": 4}')

    with fake_server({CHAT: flaky}) as server, JudgeClient(JudgeSettings(server.url, "judge")) as client:
        got = ask(client, "grade this", parse_scores)
    assert got.valid and got.attempts == 2
    assert got.raw[0].startswith("Sure!")
    body = server.posts("/v1/chat/completions")[0]
    assert body["temperature"] == 0 and body["seed"] == 0 and body["stream"] is False


def test_refusal_twice_is_an_invalid_judgement() -> None:
    refusal = answer("I'm sorry, but I can't help with that.")
    with fake_server({CHAT: refusal}) as server, JudgeClient(JudgeSettings(server.url, "judge")) as client:
        got = ask(client, "grade this", parse_scores)
    assert not got.valid and got.attempts == 2
    assert got.error is not None and "not valid JSON" in got.error
    assert got.raw == ["I'm sorry, but I can't help with that."] * 2


# --- the command --------------------------------------------------------------------------------------
def test_rubric_run_writes_scores_probes_and_run_json(run_dir: Path) -> None:
    with fake_server({MODELS: models_route(), CHAT: sensible}) as server:
        assert judge(run_dir, server.url) == 0
    records = read_judgements(run_dir)
    rubric = [r for r in records if r["kind"] == "rubric"]
    probes = [r for r in records if r["kind"] == "probe"]
    assert len(rubric) == 2 * len(TALKS) * 2  # every ok row, repeats included
    assert len(probes) == len(TALKS)
    assert all(r["valid"] and r["fit"] is True for r in rubric)
    assert {r["overall"] for r in rubric if r["model"] == "m-large"} == {4.5}
    # Greedy repeats are the same text: judged once, written for each row.
    assert len(server.posts("/v1/chat/completions")) == 2 * len(TALKS) + 2 * len(TALKS)
    record = RunRecord.load(run_dir)
    (entry,) = record.judges.values()
    assert entry.fit is True and entry.mode == "rubric" and entry.judge == "judge"
    assert entry.probes["reference"]["rate"] == 1.0 and entry.probes["reference"]["trials"] == 2 * len(TALKS)
    assert set(entry.prompts) == {"judge-rubric-v1.txt", "judge-pairwise-v1.txt"}
    assert all(len(sha) == 64 for sha in entry.prompts.values())
    assert entry.settings["temperature"] == 0.0


def test_position_biased_judge_is_unfit_and_its_scores_marked(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_server({MODELS: models_route(), CHAT: biased}) as server:
        assert judge(run_dir, server.url) == 0
    err = capsys.readouterr().err
    assert "UNFIT" in err and "FAILED" in err
    record = RunRecord.load(run_dir)
    (entry,) = record.judges.values()
    assert entry.fit is False
    assert entry.probes["reference"]["rate"] == 0.5  # right only when the true reference was shown first
    assert entry.probes["position_consistency"]["rate"] == 0.0
    assert all(r["fit"] is False for r in read_judgements(run_dir) if r["kind"] == "rubric")
    probe = next(r for r in read_judgements(run_dir) if r["kind"] == "probe")
    assert probe["picked_when_true_is_A"] == "true" and probe["picked_when_true_is_B"] == "other"
    assert probe["consistent"] is False and len(probe["raw"]) == 2


def test_pairwise_two_runs_in_both_orders(run_dir: Path, tmp_path: Path) -> None:
    other = make_run(tmp_path / "b", "run-b", models=("m-large",), talks=TALKS, repeats=1,
                     predictions={("m-large", t): "无关的文字" for t in TALKS}, references=REFERENCES)  # fmt: skip
    with fake_server({MODELS: models_route(), CHAT: sensible}) as server:
        assert judge(run_dir, server.url, "--pairwise", str(other), "--models", "m-large") == 0
    pairs = [r for r in read_judgements(run_dir) if r["kind"] == "pairwise"]
    assert len(pairs) == len(TALKS)
    assert all(p["verdict"] == "x" and p["consistent"] for p in pairs)  # run A's summary shares the talk's text
    (entry,) = RunRecord.load(run_dir).judges.values()
    assert entry.mode == "pairwise"
    assert entry.probes["pairwise_position_consistency"]["rate"] == 1.0
    (tally,) = entry.pairwise["pairs"].values()
    assert tally == {"x": 3, "y": 0, "tie": 0, "inconsistent": 0, "invalid": 0, "pairs": 3}


def test_pairwise_models_within_one_run_with_a_biased_judge(run_dir: Path) -> None:
    with fake_server({MODELS: models_route(), CHAT: biased}) as server:
        assert judge(run_dir, server.url, "--pairwise-models", "m-small,m-large") == 0
    pairs = [r for r in read_judgements(run_dir) if r["kind"] == "pairwise"]
    assert len(pairs) == len(TALKS) and not any(p["consistent"] for p in pairs)
    (entry,) = RunRecord.load(run_dir).judges.values()
    assert entry.pairwise["position_consistency"]["rate"] == 0.0
    assert entry.fit is False


def test_timeouts_stop_the_judge_with_one_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slow = Reply(status=200, content_type="application/json", body="{}", delay_s=1.5)
    with fake_server({MODELS: models_route(), CHAT: slow}) as server:
        code = judge(run_dir, server.url, "--timeout", "0.3")
    err = capsys.readouterr().err
    assert code == 2
    assert "stopped answering" in err and "timed out" in err and "Traceback" not in err


def test_http_errors_and_non_openai_answers_are_invalid_not_crashes() -> None:
    routes: dict[tuple[str, str], Callable[[dict[str, Any]], Reply] | Reply] = {
        CHAT: json_reply({"error": {"message": "model overloaded"}}, 503)
    }
    with fake_server(routes) as server, JudgeClient(JudgeSettings(server.url, "judge")) as client:
        got = ask(client, "x", parse_scores)
    assert not got.valid and "model overloaded" in (got.error or "")
    with fake_server({CHAT: json_reply({"result": "ok"})}) as server, JudgeClient(
        JudgeSettings(server.url, "judge")
    ) as client:
        got = ask(client, "x", parse_scores)
    assert "not an OpenAI-compatible" in (got.error or "")


def test_bad_endpoint_and_wrong_model_are_one_line_errors(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert judge(run_dir, f"http://127.0.0.1:{closed_port()}") == 2
    assert "start the server" in capsys.readouterr().err
    with fake_server({MODELS: models_route("other-model"), CHAT: sensible}) as server:
        assert judge(run_dir, server.url) == 2
    assert 'does not serve "judge"' in capsys.readouterr().err
    assert main(["judge", str(run_dir), "--judge-model", "judge"]) == 2
    assert "--judge-endpoint" in capsys.readouterr().err
    assert main(["judge", str(run_dir), "--judge-model", "judge", "--via", "no-such-server"]) == 2
    assert 'unknown --via server "no-such-server"' in capsys.readouterr().err
    assert main(["judge", str(run_dir), "--judge-model", "judge", "--talks", "t9"]) == 2
    assert "no ok summary of talk t9" in capsys.readouterr().err


def test_rerun_of_the_same_judge_replaces_its_lines(run_dir: Path) -> None:
    with fake_server({MODELS: models_route(), CHAT: sensible}) as server:
        assert judge(run_dir, server.url, "--talks", "t1,t2") == 0
        first = len(read_judgements(run_dir))
        assert judge(run_dir, server.url, "--talks", "t1,t2") == 0
    assert len(read_judgements(run_dir)) == first
    assert (run_dir / JUDGEMENTS_JSONL).read_text(encoding="utf-8").endswith("\n")


# --- compare and report -------------------------------------------------------------------------------
def test_compare_and_report_show_judge_scores_with_ci_and_the_judge(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.report.compare import judge_summary
    from harness.report.load import load_run

    with fake_server({MODELS: models_route(), CHAT: sensible}) as server:
        assert judge(run_dir, server.url) == 0
    run = load_run(run_dir)
    assert run.results["judge_overall"].notna().all()
    lines = judge_summary(run)
    assert lines[0].startswith("judge judge @ http://127.0.0.1") and ": fit)" in lines[0]
    large = next(line for line in lines if "m-large" in line)
    assert "overall 4.500" in large and "over 3 talk(s)" in large
    capsys.readouterr()
    assert main(["compare", str(run_dir), str(run_dir), "--force"]) in (0, 1)
    out = capsys.readouterr()
    assert "judge_overall" in out.out + out.err or "judge" in out.out
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "judge judge @" in md and "judge 1-5" in md
