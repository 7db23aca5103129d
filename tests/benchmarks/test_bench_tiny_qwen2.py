"""Writing the tiny-qwen2 GGUF that CI smoke runs use. Target: well under a second."""

from __future__ import annotations

from pathlib import Path

from harness.models.generators import write_tiny_qwen2


def test_bench_write_tiny_qwen2(benchmark, tmp_path: Path) -> None:
    counter = iter(range(10_000))
    benchmark(lambda: write_tiny_qwen2(tmp_path / f"m{next(counter)}.gguf"))
    sizes = [p.stat().st_size for p in tmp_path.glob("*.gguf")]
    assert sizes and max(sizes) < 2 * 1024 * 1024
