"""Which slot a prompt goes to: its conversation's own, else the least recently used free one."""

from __future__ import annotations

from typing import Any, cast

from services.inference.slots import Slot, pick_slot


def slots_holding(*caches: list[int]) -> list[Slot]:
    slots = []
    for seq_id, cached in enumerate(caches):
        slot = Slot(seq_id, cast(Any, None))  # choosing a slot never touches the model
        slot.cached = list(cached)
        slot.last_used = float(seq_id + 1) if cached else 0.0
        slots.append(slot)
    return slots


def test_a_conversations_next_turn_goes_to_the_slot_holding_its_history() -> None:
    system = [1, 2, 3, 4]
    first = system + [10, 11, 12, 13, 14, 15, 16, 17]
    second = system + [20, 21, 22, 23, 24, 25, 26, 27]
    slots = slots_holding(first, second, [])
    chosen, reuse = pick_slot(slots, second + [28, 29, 30])
    assert chosen is slots[1] and reuse == len(second)
    # The same prompt again reuses all of it but the last token, whose logits must be computed afresh.
    chosen, reuse = pick_slot(slots, first[:6])
    assert chosen is slots[0] and reuse == 5


def test_a_shared_system_prompt_alone_never_evicts_a_conversation() -> None:
    system = [1, 2, 3, 4]
    slots = slots_holding(system + [10, 11, 12, 13, 14, 15], system + [20, 21, 22, 23, 24, 25], [])
    chosen, reuse = pick_slot(slots, system + [30, 31])
    assert chosen is slots[2] and reuse == 0
    # With no empty slot, the least recently used conversation makes room (keeping the shared prefix).
    slots[2].cached, slots[2].last_used = system + [40, 41, 42, 43, 44, 45], 3.0
    chosen, reuse = pick_slot(slots, system + [30, 31])
    assert chosen is slots[0] and reuse == len(system)


def test_busy_slots_are_never_chosen() -> None:
    slots = slots_holding([1, 2, 3], [])
    slots[0].task = cast(Any, object())
    chosen, reuse = pick_slot(slots, [1, 2, 3, 4])
    assert chosen is slots[1] and reuse == 0
