"""The README tells the truth about settings."""

from __future__ import annotations

from pathlib import Path

from chatbot.settings_doc import BEGIN, END, settings_section

README = Path(__file__).resolve().parents[2] / "README.md"


class TestReadme:
    def test_settings_table_is_current(self) -> None:
        """The README's settings table equals the one generated from Settings (run `make readme`)."""
        text = README.read_text(encoding="utf-8")
        current = text[text.index(BEGIN) : text.index(END) + len(END)]
        assert current == settings_section()

    def test_two_commands_are_documented(self) -> None:
        """The quick start names the run and test commands that .ci/run uses."""
        text = README.read_text(encoding="utf-8")
        assert "make run" in text
        assert "make test" in text
        assert "make test" in (README.parent / ".ci" / "run").read_text()
