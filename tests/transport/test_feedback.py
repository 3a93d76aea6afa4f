"""POST /v1/messages/<id>/feedback on the real app (hypercorn, offline models): tenant scope, one vote per
user, hostile input, the /metrics counter, and the export read back by the evaluation's regression reader."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatbot.__main__ import main
from chatbot.app import create_app
from chatbot.chat.feedback import write_jsonl
from chatbot.eval.feedback import judgements, parse_feedback, read_feedback
from chatbot.providers.registry import Providers
from chatbot.stores.base import AnsweredTurn, Feedback, VectorStore
from chatbot.stores.memory import MemoryFeedbackStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.test_metrics import scrape, value

PUBLIC = {"X-Chatbot-Tenant": "public"}
QUESTION = "How do I connect over websocket?"


async def ask(
    client: httpx.AsyncClient, question: str = QUESTION, headers: dict[str, str] = PUBLIC
) -> dict[str, Any]:
    r = await client.post("/v1/chat", json={"message": question}, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def url(message_id: str) -> str:
    return f"/v1/messages/{message_id}/feedback"


@pytest.fixture
async def app_url(
    offline_providers: Providers, guide_store: VectorStore
) -> AsyncIterator[tuple[str, Services]]:
    settings = make_settings(feedback={"max_comment_chars": 50})
    async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
        async with serve_app(create_app(settings, services=svc)) as base:
            yield base, svc


class TestRating:
    async def test_rate_then_change_the_vote(self, app_url: tuple[str, Services]) -> None:
        """A rating is stored; the same caller rating again replaces it (one row, the latest vote)."""
        base, svc = app_url
        async with httpx.AsyncClient(base_url=base) as client:
            answer = await ask(client)
            mid = answer["message_id"]
            r = await client.post(url(mid), json={"rating": "up"}, headers=PUBLIC)
            assert r.status_code == 200, r.text
            assert r.json() == {"message_id": mid, "rating": "up", "replaced": False}
            r = await client.post(
                url(mid),
                json={"rating": "down", "comment": " too vague ", "reasons": ["incomplete", "incorrect"]},
                headers=PUBLIC,
            )
            assert r.json()["replaced"] is True
        assert svc.feedback is not None
        rows = [row async for row in svc.feedback.export("public")]
        assert len(rows) == 1
        row = rows[0]
        assert (row["rating"], row["comment"], row["reasons"]) == (
            "down",
            "too vague",
            ["incorrect", "incomplete"],
        )
        assert row["question"] == QUESTION
        assert row["answer"] == answer["answer"]
        assert [s["doc_id"] for s in row["sources"]] == [s["doc_id"] for s in answer["sources"]]

    async def test_two_clients_behind_one_credential_vote_apart(self, app_url: tuple[str, Services]) -> None:
        """Distinct client_ids (two widget visitors) keep a rating each."""
        base, svc = app_url
        async with httpx.AsyncClient(base_url=base) as client:
            mid = (await ask(client))["message_id"]
            for cid, rating in (("visitor-a", "up"), ("visitor-b", "down")):
                r = await client.post(url(mid), json={"rating": rating, "client_id": cid}, headers=PUBLIC)
                assert r.status_code == 200
        assert svc.feedback is not None
        assert sorted([row["rating"] async for row in svc.feedback.export()]) == ["down", "up"]

    async def test_counted_in_metrics(self, app_url: tuple[str, Services]) -> None:
        """chatbot_feedback_total counts ratings by rating."""
        base, _ = app_url
        before = await scrape(base)
        async with httpx.AsyncClient(base_url=base) as client:
            mid = (await ask(client))["message_id"]
            await client.post(url(mid), json={"rating": "down"}, headers=PUBLIC)
        after = await scrape(base)
        assert (
            value(after, "chatbot_feedback_total", rating="down")
            == value(before, "chatbot_feedback_total", rating="down") + 1
        )
        assert value(after, "chatbot_feedback_total", rating="up") == value(
            before, "chatbot_feedback_total", rating="up"
        )


class TestRefused:
    async def test_another_tenants_message_is_unknown(self, app_url: tuple[str, Services]) -> None:
        """A message id of another tenant is 404 unknown_message, and nothing is stored."""
        base, svc = app_url
        async with httpx.AsyncClient(base_url=base) as client:
            mid = (await ask(client))["message_id"]
            r = await client.post(url(mid), json={"rating": "down"}, headers={"X-Chatbot-Tenant": "globex"})
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "unknown_message"
        assert svc.feedback is not None
        assert [row async for row in svc.feedback.export()] == []

    @pytest.mark.parametrize(
        "message_id",
        ["msg_" + "0" * 32, "x" * 129, "public%3Amsg_1", "%7Bpublic%7D", "..", "msg_1%00"],
    )
    async def test_hostile_or_unknown_ids(self, app_url: tuple[str, Services], message_id: str) -> None:
        """Unknown, overlong, key-forging or odd ids are 404 unknown_message."""
        base, _ = app_url
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.post(url(message_id), json={"rating": "up"}, headers=PUBLIC)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] in ("unknown_message", "not_found")

    @pytest.mark.parametrize(
        "body",
        [
            {"rating": "meh"},
            {},
            {"rating": "up", "reasons": ["because"]},
            {"rating": "up", "reasons": ["other"] * 20},
            {"rating": "up", "comment": "x" * 51},
            {"rating": "up", "comment": 5},
            {"rating": "up", "client_id": "a:b"},
            {"rating": "up", "extra": 1},
            ["up"],
        ],
    )
    async def test_bad_bodies_are_422(self, app_url: tuple[str, Services], body: Any) -> None:
        """A body that is not a rating (bad enum, reason, comment over the limit, extra field) is 422."""
        base, _ = app_url
        async with httpx.AsyncClient(base_url=base) as client:
            mid = (await ask(client))["message_id"]
            r = await client.post(url(mid), json=body, headers=PUBLIC)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "validation_error"

    async def test_not_json_and_too_large(self, app_url: tuple[str, Services]) -> None:
        """Invalid JSON is 400; a body above the frame limit is 413 before it is read."""
        base, svc = app_url
        big = b'{"rating": "up", "comment": "' + b"x" * (svc.settings.limits.max_frame_bytes + 10) + b'"}'
        async with httpx.AsyncClient(base_url=base) as client:
            mid = (await ask(client))["message_id"]
            assert (await client.post(url(mid), content=b"{nope", headers=PUBLIC)).status_code == 400
            r = await client.post(
                url(mid), content=big, headers={**PUBLIC, "Content-Type": "application/json"}
            )
        assert r.status_code == 413


class TestExport:
    async def test_cli_export_round_trips_into_the_regression_reader(
        self, app_url: tuple[str, Services], tmp_path: Path
    ) -> None:
        """The export's JSONL reads back as regression cases whose judgements name the cited sources."""
        base, svc = app_url
        async with httpx.AsyncClient(base_url=base) as client:
            answer = await ask(client)
            await client.post(
                url(answer["message_id"]), json={"rating": "up", "comment": "spot on"}, headers=PUBLIC
            )
        assert svc.feedback is not None
        out = tmp_path / "feedback.jsonl"
        with out.open("w", encoding="utf-8") as f:
            assert await write_jsonl(svc.feedback.export("public"), f) == 1
        cases = read_feedback(out)
        assert [(c.question, c.rating, c.comment, c.answer) for c in cases] == [
            (QUESTION, "up", "spot on", answer["answer"])
        ]
        queries, qrels = judgements(cases)
        assert list(queries.values()) == [QUESTION]
        assert set(next(iter(qrels.values()))) == {s["source"] for s in answer["sources"]}

    def test_cli_without_redis_exports_nothing_and_says_why(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`python -m chatbot feedback export --out F` without Redis writes an empty file and a warning."""
        monkeypatch.delenv("CHATBOT_REDIS__URL", raising=False)
        out = tmp_path / "f.jsonl"
        assert main(["feedback", "export", "--out", str(out)]) == 0
        assert out.read_text() == ""
        assert "CHATBOT_REDIS__URL" in capsys.readouterr().err

    def test_reader_refuses_a_line_that_is_not_a_rating(self) -> None:
        """A malformed line is refused with its line number."""
        good = '{"question": "q", "rating": "up", "sources": [{"source": "a.md"}]}'
        assert parse_feedback([good, ""])[0].sources == ("a.md",)
        for bad in ("{", '{"question": "q", "rating": "meh"}', "[1]", '{"rating": "up"}'):
            with pytest.raises(Exception, match="line 2"):
                parse_feedback([good, bad])


class TestMemoryStore:
    async def test_bounded_oldest_answer_forgotten_with_its_ratings(self) -> None:
        """Past max_answers the oldest turn and its ratings go; rating it is then unknown."""
        store = MemoryFeedbackStore(max_answers=2)
        for i in range(3):
            await store.record(AnsweredTurn("t", f"m{i}", "q", "a"))
        assert len(store) == 2
        assert await store.turn("t", "m0") is None
        with pytest.raises(Exception, match="No answer"):
            await store.rate("t", Feedback("m0", "u", "up"))
        assert await store.rate("t", Feedback("m2", "u", "up")) is False
        assert await store.turn("other", "m2") is None
