"""Long documents: split a text into chunks whose prompts fit the context, and the map-reduce and refine
strategies over them -- as pure functions, so the logic is tested without a model.

Budgets are never estimated from characters: every check is a `Fits` callback that renders the stage's
prompt around the candidate text and counts it with the model's own tokenizer (`n_ctx - max_new_tokens`).

Chunks follow the document's structure: whole paragraphs (lines) while they fit; a paragraph that does
not fit alone is cut at sentence ends; a sentence that does not fit alone is cut at the longest prefix
that fits (binary search on characters). Packing is greedy, so every chunk but the last is full up to the
next boundary. Joining the chunks with their separators gives the text back unchanged.

- map-reduce: summarise each chunk ("map"), join the partial summaries one per line and summarise them
  ("reduce"); when the joined partials do not fit one prompt, they are chunked the same way and reduced
  level by level until one prompt holds them. Each level must at least halve the list (it does whenever a
  prompt holds two partials: a summary is at most max_new_tokens long); a level that would not -- partials
  about as long as the budget, as with random-weight test models whose output re-tokenizes longer -- ends
  instead in one reduce of the longest prefix that fits, and the result says `truncated`.
- refine: summarise the first chunk, then for each next chunk ask for the summary updated with it (a
  rolling summary); each chunk is sized against the prompt that carries the current summary. A summary
  so long that no text fits beside it (a random-weight test model's output can re-tokenize several times
  longer than it was generated) is cut to a prefix that leaves as much room as it takes; the result then
  says `truncated`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Fits = Callable[[str], bool]  # does the stage's prompt around this text fit the budget?

# A sentence ends at CJK or ASCII terminal punctuation (with closing quotes/brackets after it); ASCII
# . ! ? only count when followed by whitespace, so "3.5" and "Qwen1.5" stay whole.
_SENTENCE_END = re.compile(r"[。！？；…]+[”’」』）)\"']*\s*|[.!?]+[”’\"')]*\s+")


class ChunkError(ValueError):
    """Not even one character of text fits beside the prompt template: the budget is too small."""


@dataclass(frozen=True)
class Unit:
    text: str
    sep: str  # joins it to the previous unit of the same chunk: "\n" between paragraphs, "" inside one
    level: int  # 0 paragraph, 1 sentence, 2 a piece of a sentence


def split_sentences(text: str) -> list[str]:
    """Sentences with their trailing punctuation and spaces; "".join() gives `text` back."""
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() > start:
            out.append(text[start : m.end()])
            start = m.end()
    if start < len(text):
        out.append(text[start:])
    return out


def paragraphs(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


def longest_fitting_prefix(text: str, fits: Fits) -> int:
    """Length of the longest prefix of `text` that fits (0 when not even one character does)."""
    lo, hi = 0, len(text)  # text[:lo] fits (or lo == 0); text[:hi + 1] does not, once checked
    if fits(text):
        return len(text)
    hi = len(text) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[:mid]):
            lo = mid
        else:
            hi = mid - 1
    return lo


class Chunker:
    """Hands out the next chunk of a text for a given `fits`; `fits` may change between chunks (refine)."""

    def __init__(self, text: str) -> None:
        self.pending: deque[Unit] = deque(Unit(p, "\n", 0) for p in paragraphs(text))

    @property
    def done(self) -> bool:
        return not self.pending

    def _split_first(self, fits: Fits) -> None:
        unit = self.pending.popleft()
        if unit.level == 0:
            sentences = split_sentences(unit.text)
            if len(sentences) > 1:
                parts = [Unit(s, unit.sep if i == 0 else "", 1) for i, s in enumerate(sentences)]
                self.pending.extendleft(reversed(parts))
                return
        cut = longest_fitting_prefix(unit.text, fits)
        if cut == 0:
            self.pending.appendleft(unit)
            raise ChunkError("not even one character of the document fits beside the prompt")
        self.pending.appendleft(Unit(unit.text[cut:], "", 2))
        self.pending.appendleft(Unit(unit.text[:cut], unit.sep, 2))

    def next(self, fits: Fits) -> str:
        """The longest run of pending units (from the start) that fits; splits a unit that cannot fit alone."""
        chunk: str | None = None
        while self.pending:
            unit = self.pending[0]
            candidate = unit.text if chunk is None else chunk + unit.sep + unit.text
            if fits(candidate):
                chunk = candidate
                self.pending.popleft()
            elif chunk is not None:
                break
            else:
                self._split_first(fits)
        if chunk is None:
            raise ChunkError("nothing left to chunk")
        return chunk


def chunk_text(text: str, fits: Fits) -> list[str]:
    """All chunks of `text` under one budget."""
    chunker = Chunker(text)
    out: list[str] = []
    while not chunker.done:
        out.append(chunker.next(fits))
    return out


@dataclass(frozen=True)
class LongResult:
    summary: str
    chunks: int  # pieces the document was cut into (1 = it fitted whole)
    stages: int  # backend calls
    levels: int  # reduce levels (map-reduce); 0 for one call or refine
    truncated: bool  # some text (document or partial summaries) was left out to fit


def map_reduce(
    text: str,
    *,
    fits_map: Fits,
    fits_reduce: Fits,
    summarize: Callable[[str], str],
    combine: Callable[[str], str],
) -> LongResult:
    """Map-reduce over `text`; `summarize` runs a map (or whole-document) stage, `combine` a reduce stage."""
    if fits_map(text):
        return LongResult(summarize(text), chunks=1, stages=1, levels=0, truncated=False)
    chunks = chunk_text(text, fits_map)
    partials = [summarize(c) for c in chunks]
    stages, levels = len(chunks), 0
    while True:
        joined = "\n".join(p.strip() for p in partials if p.strip())
        levels += 1
        if fits_reduce(joined):
            return LongResult(combine(joined), len(chunks), stages + 1, levels, truncated=False)
        groups = chunk_text(joined, fits_reduce)
        if len(groups) > (len(partials) + 1) // 2:
            # Partials about as long as the budget: more levels would barely shrink the list.
            cut = longest_fitting_prefix(joined, fits_reduce)
            return LongResult(combine(joined[:cut]), len(chunks), stages + 1, levels, truncated=True)
        partials = [combine(g) for g in groups]
        stages += len(groups)


def refine(
    text: str,
    *,
    fits_first: Fits,
    fits_refine: Callable[[str], Fits],
    summarize: Callable[[str], str],
    update: Callable[[str, str], str],
) -> LongResult:
    """Rolling summary: `summarize` the first chunk, then `update(summary, next_chunk)` for each next one.
    `fits_refine(summary)` is the budget check of the refine prompt that carries `summary`."""
    if fits_first(text):
        return LongResult(summarize(text), chunks=1, stages=1, levels=0, truncated=False)
    chunker = Chunker(text)
    summary = summarize(chunker.next(fits_first))
    chunks, truncated = 1, False
    while not chunker.done:
        try:
            piece = chunker.next(fits_refine(summary))
        except ChunkError:
            # No room beside this summary: keep the longest prefix that leaves as much room as it takes.
            summary = summary[: longest_fitting_prefix(summary, lambda s: fits_refine(s)(s))]
            truncated = True
            piece = chunker.next(fits_refine(summary))
        summary = update(summary, piece)
        chunks += 1
    return LongResult(summary, chunks=chunks, stages=chunks, levels=0, truncated=truncated)


__all__ = [
    "ChunkError",
    "Chunker",
    "Fits",
    "LongResult",
    "chunk_text",
    "longest_fitting_prefix",
    "map_reduce",
    "paragraphs",
    "refine",
    "split_sentences",
]
