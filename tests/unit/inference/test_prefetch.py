"""Tracking on a CPU makes the next clip in a thread while the model runs over this one (inference.run)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dreem_trainer.data.sources import DataError
from dreem_trainer.inference.run import prefetched


def test_items_come_in_order_each_made_in_the_prefetch_thread() -> None:
    makers: list[str] = []

    def clips() -> Iterator[int]:
        for number in range(5):
            makers.append(threading.current_thread().name)
            yield number

    assert list(prefetched(clips())) == [0, 1, 2, 3, 4]
    assert makers == ["dreem-prefetch"] * 5


def test_an_error_making_an_item_is_raised_where_that_item_was_due() -> None:
    def clips() -> Iterator[int]:
        yield 0
        yield 1
        raise DataError("two_flies.mp4: frame 2 cannot be decoded")

    got: list[int] = []
    with pytest.raises(DataError, match="frame 2 cannot be decoded"):
        got.extend(prefetched(clips()))  # appends each item as it comes
    assert got == [0, 1]
