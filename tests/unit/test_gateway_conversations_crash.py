"""A streamed answer is stored as it comes, so a gateway that dies mid-stream leaves the partial answer, incomplete."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from services.gateway.conversations.items import NewItem
from services.gateway.conversations.store import ConversationStore
from services.gateway.conversations.turns import TurnRecorder


async def test_an_answer_cut_off_by_a_crash_is_kept_and_marked_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    store = ConversationStore.open(path)
    conversation, _ = await store.create({}, [])
    recorder = TurnRecorder(store, conversation.id, [NewItem.of_text("user", "count to ten")], "chat-7b", "named",
                            on_saved=lambda: None)
    await recorder.begin()
    page = await store.items(conversation.id, None, 10, "asc")
    assert [(i.role, i.status, i.text) for i in page.items] == [("user", "completed", "count to ten"),
                                                                ("assistant", "in_progress", "")]
    await recorder.checkpoint("one two three")
    # the process dies here: no save; the file is all that is left
    store.close()
    reopened = ConversationStore.open(path)
    page = await reopened.items(conversation.id, None, 10, "asc")
    answer = page.items[1]
    assert (answer.status, answer.text, answer.extra["model"]) == ("incomplete", "one two three", "chat-7b")


async def test_a_finished_answer_replaces_its_checkpoints(tmp_path: Path) -> None:
    store = ConversationStore.open(tmp_path / "c.db")
    conversation, _ = await store.create({}, [])
    saved: list[bool] = []
    recorder = TurnRecorder(store, conversation.id, [NewItem.of_text("user", "hi")], "chat-7b", "named",
                            on_saved=lambda: saved.append(True))
    await recorder.begin()
    await recorder.checkpoint("hel")
    assert await recorder.save("hello", "completed") and saved == [True]
    items = (await store.items(conversation.id, None, 10, "asc")).items
    assert [(i.role, i.status, i.text) for i in items] == [("user", "completed", "hi"),
                                                           ("assistant", "completed", "hello")]


async def test_an_empty_unfinished_answer_is_left_out(tmp_path: Path) -> None:
    store = ConversationStore.open(tmp_path / "c.db")
    conversation, _ = await store.create({}, [])
    recorder = TurnRecorder(store, conversation.id, [NewItem.of_text("user", "hi")], "chat-7b", "named",
                            on_saved=lambda: None)
    await recorder.begin()
    assert await recorder.save("", "incomplete")
    items = (await store.items(conversation.id, None, 10, "asc")).items
    assert [(i.role, i.text) for i in items] == [("user", "hi")]


async def test_a_rewritten_answer_is_searched_by_its_new_text_and_deletes_cleanly(tmp_path: Path) -> None:
    """Checkpoints change an item's text: the full-text index follows, so search and delete agree with it."""
    store = ConversationStore.open(tmp_path / "c.db")
    conversation, _ = await store.create({}, [])
    recorder = TurnRecorder(store, conversation.id, [NewItem.of_text("user", "tell me")], "chat-7b", "named",
                            on_saved=lambda: None)
    await recorder.begin()
    await recorder.checkpoint("partial zebra")
    assert await recorder.save("complete giraffe answer", "completed")
    assert [hit.conversation_id for hit in await store.search("giraffe", 5)] == [conversation.id]
    assert await store.search("zebra", 5) == []
    await store.delete(conversation.id)  # the index's delete of the old text used to find a stale entry
    assert await store.search("giraffe", 5) == []
    integrity = store._conn.execute("INSERT INTO items_fts (items_fts) VALUES ('integrity-check')")
    assert integrity.fetchall() == []


async def test_a_burst_of_callers_queues_for_one_worker_thread(tmp_path: Path) -> None:
    """The connection serves one call at a time, so a burst waits in a queue rather than parking a thread per
    caller (each new thread costs the process a malloc arena that it keeps after the burst)."""
    store = ConversationStore.open(tmp_path / "c.db")
    seen: set[str] = set()
    original = store._write

    def tracked(work, *args):  # type: ignore[no-untyped-def]
        seen.add(threading.current_thread().name)
        time.sleep(0.002)  # long enough that callers pile up behind the one running
        return original(work, *args)

    store._write = tracked  # type: ignore[method-assign]
    before = {t.ident for t in threading.enumerate()}
    made = await asyncio.gather(*(store.create({"n": str(n)}, []) for n in range(24)))
    assert len({conversation.id for conversation, _ in made}) == 24
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert len(seen) == 1 and len(started) <= 1, (seen, [t.name for t in started])
    store.close()
    assert not any(t.is_alive() for t in started)
