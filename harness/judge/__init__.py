"""`harness judge`: an LLM judge for a run's summaries, with validity probes that say whether to trust it.

    client    one greedy, seeded chat request to any OpenAI-compatible endpoint (httpx, non-streaming)
    rubric    the versioned prompts (prompts/judge-*-v1.txt), strict JSON parsing, one retry, raw output kept
    pairwise  two summaries judged in both orders; a verdict only when both orders agree
    probes    (a) the talk's own reference against another talk's: the judge must prefer the true one;
              (b) position consistency of pairwise verdicts. Below the stated rates the judge is unfit.
    columns   judgements.jsonl -> per-row judge_* columns that compare and report join to results.csv
"""
