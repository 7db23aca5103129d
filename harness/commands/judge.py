"""`harness judge RUN_DIR`: score a run's summaries with an LLM judge, after checking the judge is any good.

The judge is any OpenAI-compatible endpoint (`--judge-endpoint URL --judge-model NAME`), or a models.yaml
entry that this command serves itself (`--judge-model ID --via llama-cpp-server`, the harness's managed
servers, stopped at the end). Requests are greedy (temperature 0) and seeded.

Order of work: (a) the reference probe (harness.judge.probes) on the run's talks; then either the rubric
(each ok summary scored 1-5 on faithfulness, coverage, fluency, conciseness) or, with `--pairwise RUN_B` or
`--pairwise-models A,B`, pairwise verdicts with position swapping and their consistency (probe b). Results:
judgements.jsonl in RUN_DIR (every raw answer kept), the judge's record in run.json (`judges`), and the
judge_* columns that compare and report join. A judge that fails a probe is reported UNFIT and its scores
are marked so (`judge_fit` false); the exit status stays 0, since the judging itself worked.
"""

from __future__ import annotations

import argparse
import atexit
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results.layout import RUN_JSON, SUMMARIES_JSONL

DEFAULT_JUDGE_N_CTX = 8192
MAX_CONSECUTIVE_FAILURES = 3  # requests failing in a row: the server is gone, stop instead of logging noise

Printer = Callable[[str], None]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "judge",
        help="score a run's summaries with an LLM judge (rubric or pairwise), with validity probes",
        description=(
            "Score each ok summary of RUN_DIR with an LLM judge behind an OpenAI-compatible endpoint: rubric "
            "scores 1-5 (faithfulness, coverage, fluency, conciseness) or pairwise verdicts judged in both "
            "orders. Before scoring, the judge must prefer each talk's own reference over another talk's "
            "(probe a); a judge below the stated rate is reported unfit. Writes judgements.jsonl and the judge's "
            "record in run.json; compare and report show the judge_* columns."
        ),
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=f"run directory with {SUMMARIES_JSONL}")
    p.add_argument(
        "--judge-endpoint",
        metavar="URL",
        help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080 (default: none; required without --via)",
    )
    p.add_argument(
        "--judge-model",
        required=True,
        metavar="NAME",
        help="the served model name; with --via, a models.yaml id that is served for the judging",
    )
    p.add_argument(
        "--via",
        metavar="SERVER",
        help="serve --judge-model here: llama-cpp-server, llama-server (default: none, use --judge-endpoint)",
    )
    p.add_argument(
        "--models-file", type=Path, metavar="FILE.yaml", help="models.yaml for --via (default: the shipped one)"
    )
    p.add_argument("--threads", type=int, default=None, metavar="N", help="--via: server threads (default: all cores)")
    p.add_argument(
        "--judge-n-ctx", type=int, default=DEFAULT_JUDGE_N_CTX, metavar="N", help="--via: the judge's context size"
    )
    p.add_argument("--offline", action="store_true", help="--via: use only cached weights")
    p.add_argument(
        "--pairwise", type=Path, metavar="RUN_B", help="judge RUN_DIR's summaries against RUN_B's (default: rubric)"
    )
    p.add_argument(
        "--pairwise-models", metavar="A,B", help="judge two models of RUN_DIR against each other (default: rubric)"
    )
    p.add_argument("--talks", metavar="ID[,ID…]", help="talks to judge (default: all)")
    p.add_argument("--models", metavar="ID[,ID…]", help="models of the run to judge (default: all)")
    p.add_argument("--max-tokens", type=int, default=96, metavar="N", help="answer length cap per request")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per request")
    p.add_argument(
        "--max-source-chars", type=int, default=4000, metavar="N", help="talk characters shown to the judge"
    )
    p.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable holding the endpoint's API key (default: none)"
    )
    p.set_defaults(func=run)


# --- the run's summaries -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    row: int  # 0-based position in summaries.jsonl = the results.csv row (harness.results.durable)
    run_id: str
    model: str
    talk_id: str
    repeat: Any
    lang: str
    prediction: str
    reference: str
    source: str


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def read_summaries(run_dir: Path) -> list[Summary]:
    from harness.jsonl import read_objects
    from harness.results.durable import stderr_warning

    path = run_dir / SUMMARIES_JSONL
    if not path.is_file():
        raise HarnessError(f"no {SUMMARIES_JSONL} in {run_dir}; pass a run directory written by harness run")
    out = []
    for row, (_, _, obj) in enumerate(read_objects(path, torn_tail=stderr_warning)):
        if obj.get("status") != "ok" or not isinstance(obj.get("prediction"), str):
            continue
        refs = [r for r in obj.get("references") or [] if isinstance(r, str) and r.strip()]
        out.append(
            Summary(
                row=row,
                run_id=str(obj.get("run_id") or run_dir.name),
                model=str(obj.get("model")),
                talk_id=str(obj.get("talk_id")),
                repeat=obj.get("repeat"),
                lang=str(obj.get("summary_lang") or "zh"),
                prediction=obj["prediction"],
                reference=refs[0] if refs else "",
                source=str(obj.get("source") or ""),
            )
        )
    return out


def _filter(summaries: list[Summary], talks: list[str], models: list[str], where: Path) -> list[Summary]:
    for name, wanted, have in (("talk", talks, {s.talk_id for s in summaries}),
                               ("model", models, {s.model for s in summaries})):  # fmt: skip
        missing = [w for w in wanted if w not in have]
        if missing:
            raise HarnessError(
                f"{where}: no ok summary of {name} {', '.join(missing)}; it has {', '.join(sorted(have)) or 'none'}"
            )
    chosen = [s for s in summaries if (not talks or s.talk_id in talks) and (not models or s.model in models)]
    if not chosen:
        raise HarnessError(f"{where}: no ok summaries to judge")
    return chosen


# --- the judge's endpoint -----------------------------------------------------------------------------
@dataclass
class JudgeEndpoint:
    url: str
    model: str
    label: str
    via: str | None = None
    stop: Callable[[], None] | None = None


def start_judge(args: argparse.Namespace, log_dir: Path, echo: Printer) -> JudgeEndpoint:
    if args.via is None:
        if not args.judge_endpoint:
            raise HarnessError("give --judge-endpoint URL (a running server), or --via SERVER to serve --judge-model")
        url = args.judge_endpoint.rstrip("/")
        return JudgeEndpoint(url, args.judge_model, f"{args.judge_model} @ {url}")
    if args.judge_endpoint:
        raise HarnessError("--via serves the judge here; leave out --judge-endpoint (or drop --via)")
    import os

    from harness.models.registry import load_models, select_models
    from harness.models.sources import resolve
    from harness.servers import ServerSettings, server_class

    server_cls = server_class(args.via)
    server_cls.preflight()
    (entry,) = select_models(load_models(args.models_file), [args.judge_model])
    from harness.backends.llama_cpp import LlamaCppBackend

    if entry.backend != LlamaCppBackend.name:
        raise HarnessError(f"--via {args.via} serves GGUF weights of llama_cpp entries; {entry.id} is {entry.backend}")
    weights = resolve(entry, offline=args.offline, progress=sys.stderr.isatty())
    assert weights is not None  # llama_cpp entries have local weights
    settings = ServerSettings(
        model_id=entry.id,
        weights=weights,
        threads=args.threads or os.cpu_count() or 1,
        n_ctx=args.judge_n_ctx,
        log_path=log_dir / f"judge-server-{entry.id}.log",
        request_timeout_s=args.timeout,
    )
    server = server_cls(settings)
    atexit.register(server.stop)  # never leave a server behind
    echo(f"starting {args.via} for judge {entry.id} on {server.url} (log {settings.log_path.name})")
    ready = server.start()
    echo(f"{args.via} ready in {ready:.1f} s")
    return JudgeEndpoint(server.url, server.served_model, f"{entry.id} via {args.via}", args.via, server.stop)


# --- the passes ---------------------------------------------------------------------------------------
class _Guard:
    """Stops the pass when requests keep failing (server gone) instead of recording every one as invalid."""

    def __init__(self) -> None:
        self.failures = 0

    def check(self, errors: Sequence[str | None]) -> None:
        failed = [e for e in errors if e and e.startswith("request failed")]
        self.failures = self.failures + 1 if failed else 0
        if self.failures >= MAX_CONSECUTIVE_FAILURES:
            raise HarnessError(f"the judge stopped answering ({failed[-1]}); judgements so far are kept")


def probe_talks(summaries: list[Summary]) -> list[Any]:
    from harness.judge.probes import ProbeTalk

    talks: dict[str, ProbeTalk] = {}
    for s in summaries:
        if s.talk_id not in talks and s.reference:
            talks[s.talk_id] = ProbeTalk(s.talk_id, s.source, s.reference)
    return list(talks.values())


def rubric_pass(client: Any, summaries: list[Summary], fit: bool | None, writer: Any, echo: Printer) -> dict[str, int]:
    from harness.judge.rubric import RUBRIC_PROMPT, ask, load_prompt, overall, parse_scores, rubric_prompt

    prompt = load_prompt(RUBRIC_PROMPT)
    guard = _Guard()
    done: dict[tuple[str, str, str], Any] = {}  # greedy repeats are the same text: judged once
    judged = invalid = 0
    for i, s in enumerate(summaries, 1):
        key = (s.model, s.talk_id, s.prediction)
        answer = done.get(key)
        if answer is None:
            text = rubric_prompt(prompt, s.source, s.prediction, s.lang, client.settings.max_source_chars)
            answer = ask(client, text, parse_scores)
            done[key] = answer
            guard.check([answer.error])
        scores = answer.value
        writer.write({
            "kind": "rubric", "row": s.row, "run_id": s.run_id, "model": s.model, "talk_id": s.talk_id,
            "repeat": s.repeat, "scores": scores, "overall": overall(scores) if scores else None,
            "valid": answer.valid, "attempts": answer.attempts, "error": answer.error, "raw": answer.raw, "fit": fit,
        })  # fmt: skip
        judged += 1
        invalid += not answer.valid
        shown = " ".join(f"{k[:4]} {v}" for k, v in scores.items()) if scores else f"invalid ({answer.error})"
        echo(f"[{i}/{len(summaries)}] {s.model} · {s.talk_id} · r{s.repeat}: {shown}")
    return {"judged": judged, "invalid": invalid}


def _pairs(a: list[Summary], b: list[Summary], models: list[str] | None) -> list[tuple[Summary, Summary]]:
    """(x, y) per talk: first ok repeat of each side. Two runs: the same model on both sides where they
    share models, else their only model each; one run: the two named models."""
    def first(rows: list[Summary]) -> dict[tuple[str, str], Summary]:
        out: dict[tuple[str, str], Summary] = {}
        for s in rows:
            out.setdefault((s.model, s.talk_id), s)
        return out

    fa, fb = first(a), first(b)
    if models:
        mx, my = models
        sides = [(mx, my)]
    else:
        ma, mb = sorted({m for m, _ in fa}), sorted({m for m, _ in fb})
        shared = [m for m in ma if m in mb]
        if shared:
            sides = [(m, m) for m in shared]
        elif len(ma) == 1 and len(mb) == 1:
            sides = [(ma[0], mb[0])]
        else:
            raise HarnessError(
                "--pairwise: the runs share no model and hold several each; narrow them with --models "
                f"(run A: {', '.join(ma)}; run B: {', '.join(mb)})"
            )
    pairs = []
    for mx, my in sides:
        for (m, talk), x in fa.items():
            y = fb.get((my, talk))
            if m == mx and y is not None:
                pairs.append((x, y))
    if not pairs:
        raise HarnessError("--pairwise: no talk has an ok summary on both sides; check --talks and --models")
    return pairs


def pairwise_pass(client: Any, pairs: list[tuple[Summary, Summary]], fit: bool | None, writer: Any,
                  echo: Printer) -> dict[str, Any]:  # fmt: skip
    from harness.judge.pairwise import judge_pair
    from harness.judge.probes import MIN_POSITION_CONSISTENCY, rate_record
    from harness.judge.rubric import PAIRWISE_PROMPT, load_prompt

    prompt = load_prompt(PAIRWISE_PROMPT)
    guard = _Guard()
    tally: dict[str, dict[str, Any]] = {}
    for i, (x, y) in enumerate(pairs, 1):
        result = judge_pair(client, prompt, x.source, x.prediction, y.prediction, client.settings.max_source_chars)
        guard.check([result.first.error, result.second.error])
        name = f"{x.model}@{x.run_id} vs {y.model}@{y.run_id}"
        t = tally.setdefault(name, {"x": 0, "y": 0, "tie": 0, "inconsistent": 0, "invalid": 0, "pairs": 0})
        t["pairs"] += 1
        if result.verdict is not None:
            t[result.verdict] += 1
        elif result.first.valid and result.second.valid:
            t["inconsistent"] += 1
        else:
            t["invalid"] += 1
        writer.write({
            "kind": "pairwise", "talk_id": x.talk_id, "x": {"run_id": x.run_id, "model": x.model, "row": x.row},
            "y": {"run_id": y.run_id, "model": y.model, "row": y.row}, "x_first": result.first_winner,
            "y_first": result.second_winner, "verdict": result.verdict, "consistent": result.consistent,
            "errors": [a.error for a in (result.first, result.second) if a.error], "raw": result.raw, "fit": fit,
        })  # fmt: skip
        echo(f"[{i}/{len(pairs)}] {x.talk_id}: {name}: A-first {result.first_winner}, B-first "
             f"{result.second_winner} -> {result.verdict or 'no verdict'}")  # fmt: skip
    consistent = sum(t["x"] + t["y"] + t["tie"] for t in tally.values())
    total = sum(t["pairs"] for t in tally.values())
    return {"pairs": tally, "position_consistency": rate_record(consistent, total, MIN_POSITION_CONSISTENCY)}


# --- reporting ----------------------------------------------------------------------------------------
def fmt_rate(r: dict[str, Any]) -> str:
    if not r.get("trials"):
        return "not run"
    verdict = "passed" if r["passed"] else "FAILED"
    return (
        f"{r['successes']}/{r['trials']} = {r['rate']:.2f} [{r['ci']} {r['ci_low']:.2f}-{r['ci_high']:.2f}], "
        f"needs >= {r['threshold']:.2f}: {verdict}"
    )


def _update_run_json(run_dir: Path, label: str, judge: Any, echo: Printer) -> None:
    from harness import safefs
    from harness.results.record import RunRecord

    path = run_dir / RUN_JSON
    if not path.is_file():
        echo(f"note: no {RUN_JSON} in {run_dir}: the judge's settings are recorded in judgements.jsonl only")
        return
    record = RunRecord.load(path)
    record.judges.pop(label, None)
    record.judges[label] = judge  # last = the latest pass, which compare and report show
    safefs.write_atomic(path, record.to_json())


def run(args: argparse.Namespace) -> int:
    from harness.judge.client import JudgeClient, JudgeSettings
    from harness.judge.columns import JudgementsWriter
    from harness.judge.probes import MIN_REFERENCE_AGREEMENT, reference_probe
    from harness.judge.rubric import PAIRWISE_PROMPT, RUBRIC_PROMPT, load_prompt
    from harness.results.record import JudgeRecord

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise HarnessError(f"{run_dir}: not a run directory; pass results/<run_id>")
    if args.pairwise and args.pairwise_models:
        raise HarnessError("--pairwise RUN_B and --pairwise-models A,B are two ways to pick pairs; give one")
    pair_models = _csv(args.pairwise_models) if args.pairwise_models else None
    if pair_models is not None and len(pair_models) != 2:
        raise HarnessError(f"--pairwise-models takes two model ids, A,B; got {args.pairwise_models!r}")
    talks, models = _csv(args.talks), _csv(args.models)
    mine = _filter(read_summaries(run_dir), talks, [*models, *(pair_models or [])], run_dir)
    pairs = None
    if args.pairwise:
        other = _filter(read_summaries(args.pairwise), talks, [], args.pairwise)
        pairs = _pairs(mine, other, None)
    elif pair_models:
        pairs = _pairs(mine, mine, pair_models)

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    endpoint = start_judge(args, run_dir, echo)
    settings = JudgeSettings(endpoint.url, endpoint.model, max_tokens=args.max_tokens, timeout_s=args.timeout,
                             api_key_env=args.api_key_env, max_source_chars=args.max_source_chars)  # fmt: skip
    try:
        with JudgeClient(settings) as client:
            client.check()
            writer = JudgementsWriter(run_dir, endpoint.label)
            try:
                echo(f"judge {endpoint.label}: probe (a), each talk's reference against another talk's")
                guard = _Guard()
                probe = reference_probe(
                    client,
                    load_prompt(PAIRWISE_PROMPT),
                    probe_talks(mine),
                    args.max_source_chars,
                    lambda pair: guard.check([pair.first.error, pair.second.error]),
                )
                writer.write_all(t.record() for t in probe.trials)
                probes = probe.summary()
                fit = probe.fit
                echo(f"probe (a) reference agreement: {fmt_rate(probes['reference'])}"
                     + (f" ({probe.note})" if probe.note else ""))  # fmt: skip
                echo(f"probe (b) position consistency on the probe pairs: {fmt_rate(probes['position_consistency'])}")
                pairwise = None
                if pairs is None:
                    counts = rubric_pass(client, mine, fit, writer, echo)
                else:
                    pairwise = pairwise_pass(client, pairs, fit, writer, echo)
                    counts = {
                        "judged": len(pairs),
                        "invalid": sum(t["invalid"] for t in pairwise["pairs"].values()),
                    }
                    probes["pairwise_position_consistency"] = pairwise["position_consistency"]
                    echo(f"probe (b) position consistency on the judged pairs: "
                         f"{fmt_rate(pairwise['position_consistency'])}")  # fmt: skip
                    if pairwise["position_consistency"]["passed"] is False and fit is not False:
                        fit = False
            finally:
                writer.close()
    finally:
        if endpoint.stop is not None:
            endpoint.stop()
    names = [PAIRWISE_PROMPT] + ([RUBRIC_PROMPT] if pairs is None else [])
    record = JudgeRecord(
        judge=endpoint.model,
        endpoint=endpoint.url,
        via=endpoint.via,
        mode="rubric" if pairs is None else "pairwise",
        settings=settings.record(),
        prompts={n: load_prompt(n).sha256 for n in names},
        started_at=started,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        judged=counts["judged"],
        invalid=counts["invalid"],
        probes={**probes, "min_reference_agreement": MIN_REFERENCE_AGREEMENT},
        fit=fit,
        pairwise=pairwise,
    )
    _update_run_json(run_dir, endpoint.label, record, echo)
    _print_result(endpoint.label, record, pairs is None, run_dir, echo)
    print(run_dir / "judgements.jsonl")
    return 0


def _print_result(label: str, record: Any, rubric: bool, run_dir: Path, echo: Printer) -> None:
    verdict = {True: "fit", False: "UNFIT (scores marked judge_fit=false)", None: "unvalidated (probe not run)"}
    echo(f"judge {label}: {verdict[record.fit]}; {record.judged} judged, {record.invalid} invalid after the retry")
    if rubric:
        for line in judge_score_lines(run_dir):
            echo(line)
    elif record.pairwise:
        for name, t in record.pairwise["pairs"].items():
            echo(f"{name}: x wins {t['x']}, y wins {t['y']}, ties {t['tie']}, inconsistent {t['inconsistent']}, "
                 f"invalid {t['invalid']} of {t['pairs']}")  # fmt: skip


def judge_score_lines(run_dir: Path) -> list[str]:
    """Per model: the judge's mean scores with a 95 % Student-t interval over talks (repeats averaged first)."""
    from harness.report.compare import judge_summary
    from harness.report.load import load_run

    return judge_summary(load_run(run_dir))
