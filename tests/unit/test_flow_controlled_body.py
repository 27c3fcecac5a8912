"""streaming.FlowControlledBody: pieces reach the reader as they came, the whole body joined."""

from __future__ import annotations

import asyncio

from zot_registry.streaming import HIGH_WATER, FlowControlledBody


def test_a_waiting_piece_is_handed_over_itself_and_several_are_joined_once() -> None:
    async def read() -> list[bytes]:
        body = FlowControlledBody(None, None)
        first = b"a" * 1000
        body.append(first)
        got = [await body.__anext__()]
        assert got[0] is first  # not copied
        body.append(b"b" * 10)
        body.append(b"c" * 10)
        body.set_complete()
        got += [chunk async for chunk in body]
        return got

    assert asyncio.run(read()) == [b"a" * 1000, b"b" * 10 + b"c" * 10]


def test_the_whole_body_is_every_piece_and_holds_no_back_pressure() -> None:
    async def whole() -> tuple[bytes, bool]:
        body = FlowControlledBody(None, None)
        waiting = asyncio.ensure_future(body)
        await asyncio.sleep(0)
        for _ in range(3):
            body.append(b"x" * HIGH_WATER)
        room = body._room.is_set()  # the receive loop may go on: the reader wants it all
        body.set_complete()
        return await waiting, room

    data, room = asyncio.run(whole())
    assert data == b"x" * (3 * HIGH_WATER) and room


def test_a_reader_behind_by_high_water_holds_the_receive_loop_until_it_reads() -> None:
    async def held() -> tuple[bool, bool]:
        body = FlowControlledBody(None, None)
        body.append(b"y" * HIGH_WATER)
        before = body._room.is_set()
        await body.__anext__()
        return before, body._room.is_set()

    assert asyncio.run(held()) == (False, True)
