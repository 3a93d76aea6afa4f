"""SendDeadlines (api/ws.py): one timer for all of a connection's sends, each deadline exact."""

from __future__ import annotations

import asyncio

from chatbot.api.ws import SendDeadlines


async def stuck_send(deadlines: SendDeadlines, gate: asyncio.Future[None], log: list[str]) -> None:
    """A sender whose write waits on `gate`; logs how its send ended."""
    task = asyncio.current_task()
    assert task is not None
    deadlines.begin(task)
    try:
        await gate
    except asyncio.CancelledError:
        log.append("deadline" if deadlines.end(task) else "cancelled")
        raise
    log.append("sent" if not deadlines.end(task) else "deadline-after-send")


async def test_a_send_pending_past_its_deadline_is_cancelled_and_told() -> None:
    """The stuck send is cancelled about `seconds` after it began; end() says the deadline did it."""
    loop = asyncio.get_running_loop()
    deadlines = SendDeadlines(0.05)
    log: list[str] = []
    began = loop.time()
    task = asyncio.create_task(stuck_send(deadlines, loop.create_future(), log))
    await asyncio.wait((task,))
    assert task.cancelled()
    assert log == ["deadline"]
    assert 0.045 <= loop.time() - began < 0.5


async def test_quick_sends_are_never_cancelled_and_a_later_stuck_one_gets_its_own_deadline() -> None:
    """Sends that finish leave no trace; a send that began later is timed from its own start, not the timer's."""
    loop = asyncio.get_running_loop()
    deadlines = SendDeadlines(0.1)
    log: list[str] = []
    for _ in range(3):
        gate: asyncio.Future[None] = loop.create_future()
        loop.call_soon(gate.set_result, None)
        await stuck_send(deadlines, gate, log)
    await asyncio.sleep(0.06)  # the timer armed by the first send fires at 0.1 s, mid-way through the next
    began = loop.time()
    task = asyncio.create_task(stuck_send(deadlines, loop.create_future(), log))
    await asyncio.wait((task,))
    assert log == ["sent", "sent", "sent", "deadline"]
    assert loop.time() - began >= 0.095  # not cut short by the earlier timer


async def test_another_cancellation_is_not_taken_for_the_deadline() -> None:
    """A stop that cancels a pending send before its deadline is a plain cancellation; close() disarms."""
    loop = asyncio.get_running_loop()
    deadlines = SendDeadlines(10.0)
    log: list[str] = []
    task = asyncio.create_task(stuck_send(deadlines, loop.create_future(), log))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait((task,))
    deadlines.close()
    assert log == ["cancelled"]
