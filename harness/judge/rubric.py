"""The judge's prompts and answers: versioned prompt files, strict JSON, one retry, raw output kept.

Prompts live in the repo's prompts/ (packaged through harness/resources/prompts): `judge-rubric-v1.txt`
(faithfulness, coverage, fluency, conciseness, 1-5 each) and `judge-pairwise-v1.txt` (which of two summaries
is better). A changed prompt is a new file (v2), never an edit: run.json records each prompt's sha256, so
scores from different prompts are never mistaken for one another.

Strict JSON: the whole answer must be one JSON object (a ```json fence around it is tolerated, nothing else),
with exactly the keys asked for and integer scores 1-5. Anything else -- prose around it, a refusal, a score
of 7 -- gets one retry that shows the judge its answer and the reason; a second failure makes the judgement
invalid (no score), and both raw answers are kept in judgements.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.judge.client import JudgeClient, JudgeRequestError
from harness.prompts import prompts_dir

CRITERIA: tuple[str, ...] = ("faithfulness", "coverage", "fluency", "conciseness")
RUBRIC_PROMPT = "judge-rubric-v1.txt"
PAIRWISE_PROMPT = "judge-pairwise-v1.txt"
WINNERS: tuple[str, ...] = ("A", "B", "tie")
RETRY_MESSAGE = "Your answer was not the JSON object asked for ({reason}). Answer again with only the JSON object."
LANG_NAMES = {"zh": "Chinese", "en": "English"}

_FENCE_RE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


class ParseError(ValueError):
    """The answer is not the JSON object asked for; the message says why, for the retry."""


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    body: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()

    def render(self, **fields: str) -> str:
        """Fill the {placeholders} in one pass, so braces inside a talk or summary stay as written."""
        return re.sub(r"\{(\w+)\}", lambda m: fields.get(m.group(1), m.group(0)), self.body)


def load_prompt(name: str) -> JudgePrompt:
    path = prompts_dir() / name
    try:
        return JudgePrompt(name, path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HarnessError(f"judge prompt {path}: cannot read ({exc.strerror}); reinstall harness") from None


def _json_object(text: str) -> dict[str, Any]:
    body = text.strip()
    fenced = _FENCE_RE.match(body)
    if fenced:
        body = fenced.group(1)
    if not body:
        raise ParseError("the answer was empty")
    try:
        data = json.loads(body)
    except ValueError:
        raise ParseError(f"not valid JSON: {' '.join(body.split())[:60]!r}") from None
    if not isinstance(data, dict):
        raise ParseError("a JSON value that is not an object")
    return data


def parse_scores(text: str) -> dict[str, int]:
    """The four rubric scores from a strict JSON answer; ParseError naming what is wrong."""
    data = _json_object(text)
    missing = [c for c in CRITERIA if c not in data]
    extra = [k for k in data if k not in CRITERIA]
    if missing or extra:
        raise ParseError(
            "keys must be exactly " + ", ".join(CRITERIA) + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(map(str, extra))}" if extra else "")
        )
    scores: dict[str, int] = {}
    for c in CRITERIA:
        v = data[c]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5:
            raise ParseError(f"{c} must be an integer from 1 to 5, got {json.dumps(v)}")
        scores[c] = v
    return scores


def parse_winner(text: str) -> str:
    """"A", "B" or "tie" from a strict {"winner": ...} answer."""
    data = _json_object(text)
    winner = data.get("winner")
    if set(data) != {"winner"} or not isinstance(winner, str) or winner.strip() not in WINNERS:
        raise ParseError('the answer must be {"winner": "A"}, {"winner": "B"} or {"winner": "tie"}')
    return winner.strip()


@dataclass
class Answer:
    """One judgement: the parsed value (None when invalid), every raw answer, and why it failed."""

    value: Any = None
    raw: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None

    @property
    def attempts(self) -> int:
        return len(self.raw)


def ask(client: JudgeClient, prompt: str, parse: Callable[[str], Any]) -> Answer:
    """Ask once; on an unparsable answer or a failed request, ask once more (the retry shows the judge its
    previous answer and why it was refused)."""
    messages = [{"role": "user", "content": prompt}]
    answer = Answer()
    for _ in range(2):
        try:
            text = client.complete(messages)
        except JudgeRequestError as exc:
            answer.raw.append("")
            answer.error = f"request failed: {exc}"
            continue
        answer.raw.append(text)
        try:
            answer.value = parse(text)
            answer.error = None
            return answer
        except ParseError as exc:
            answer.error = f"invalid answer: {exc}"
            messages = [
                *messages[:1],
                {"role": "assistant", "content": text},
                {"role": "user", "content": RETRY_MESSAGE.format(reason=exc)},
            ]
    return answer


def cut_source(text: str, limit: int) -> str:
    """The talk as the judge sees it: at most `limit` characters (the judge's context is finite)."""
    return text if len(text) <= limit else text[:limit] + " …"


def rubric_prompt(prompt: JudgePrompt, source: str, summary: str, lang: str, limit: int) -> str:
    return prompt.render(source=cut_source(source, limit), summary=summary, lang=LANG_NAMES.get(lang, lang))


def overall(scores: dict[str, int]) -> float:
    """The mean of the four criteria: one number per summary for tables and compare."""
    return sum(scores[c] for c in CRITERIA) / len(CRITERIA)
