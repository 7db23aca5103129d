from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.prompts import LANGS, PLACEHOLDER, STYLES, load_template, prompts_dir

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("style", STYLES)
def test_every_language_and_style_has_a_template(lang: str, style: str) -> None:
    t = load_template(lang, style)
    rendered = t.render("演讲正文")
    assert "演讲正文" in rendered.content and PLACEHOLDER not in rendered.content
    assert len(t.sha) == 12


def test_chinese_templates_ask_in_chinese_and_english_ones_in_english() -> None:
    assert "中文" in load_template("zh", "chat").body or "摘要" in load_template("zh", "chat").body
    assert "English" in load_template("en", "chat").body


def test_packaged_prompts_are_the_repo_prompts() -> None:
    assert sorted(p.name for p in prompts_dir().glob("*.txt")) == sorted(
        p.name for p in (REPO / "prompts").glob("*.txt")
    )


def test_template_hash_changes_with_the_text(tmp_path: Path) -> None:
    (tmp_path / "summarize.zh.chat.txt").write_text("总结：{text}", encoding="utf-8")
    a = load_template("zh", "chat", tmp_path).sha
    (tmp_path / "summarize.zh.chat.txt").write_text("请总结：{text}", encoding="utf-8")
    assert load_template("zh", "chat", tmp_path).sha != a


def test_template_without_placeholder_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "summarize.zh.chat.txt").write_text("总结", encoding="utf-8")
    with pytest.raises(HarnessError, match=r"\{text\}"):
        load_template("zh", "chat", tmp_path)


def test_unknown_style_is_rejected() -> None:
    with pytest.raises(HarnessError, match="style"):
        load_template("zh", "poem")


@pytest.mark.parametrize("task", ["map", "reduce", "refine"])
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("style", STYLES)
def test_long_document_tasks_have_templates(task: str, lang: str, style: str) -> None:
    t = load_template(lang, style, task=task)
    assert t.name == f"{task}.{lang}.{style}.txt" and t.task == task
    rendered = t.render("正文{summary}", summary="前文摘要")
    assert "正文{summary}" in rendered.content  # inserted text is never re-substituted
    assert ("前文摘要" in rendered.content) == (task == "refine")
    rest = rendered.content.replace("正文{summary}", "")
    assert "{text}" not in rest and "{summary}" not in rest


def test_refine_template_needs_both_placeholders(tmp_path: Path) -> None:
    (tmp_path / "refine.zh.chat.txt").write_text("更新：{text}", encoding="utf-8")
    with pytest.raises(HarnessError, match=r"\{summary\}"):
        load_template("zh", "chat", tmp_path, task="refine")
