"""A producer thread ahead of its consumer: ffmpeg decodes the next frames while the caller works."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from queue import SimpleQueue
from typing import TypeVar

T = TypeVar("T")


def read_ahead(items: Iterable[T]) -> Iterator[T]:
    """`items` made on a thread of their own while the caller works on the ones made so far: ffmpeg decodes
    the next sampled frames while this one is detected (its pipe holds less than a frame, so without this
    it waited on every detection). Holds what the caller has not taken yet: for a few dozen frames. The
    producer's exception is raised here; stopping early stops the producer (and closes `items`)."""
    made: SimpleQueue[tuple[bool, object]] = SimpleQueue()
    stop, done = threading.Event(), object()

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if stop.is_set():
                    break
                made.put((True, item))
            made.put((True, done))
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread as it is)
            made.put((False, exc))
        finally:
            if close := getattr(source, "close", None):
                close()  # a generator over ffmpeg kills it

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = made.get()
            if not ok:
                raise item  # type: ignore[misc]
            if item is done:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
