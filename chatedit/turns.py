"""One session's turns in order, each run to its end whoever listens.

A ``TurnQueue`` per open session keeps the turns submitted to it (a message, a slider moved, a
button pressed, a photo) in order and runs them one at a time in its own worker thread, which
exists only while there is work. A turn's events go to the ``Listener``s it had when it was
submitted; a listener that stops reading (a browser closed, a request cancelled, a generator
closed or simply dropped) stops nothing: the turn still runs to its end, with its turn log, its
reply and its memory, and is saved. A process-wide ``threading.Semaphore`` bounds how many turns
run at once over all sessions.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from typing import Callable, Iterator

from chatedit.agent import FrameEvent

logger = logging.getLogger(__name__)

_END = object()  # after a turn's last event


class Listener:
    """A turn's events as they come, for one reader. A reader that falls behind gets only the latest
    of a run of frames (a live preview needs no more), so an abandoned listener holds one frame at most."""

    def __init__(self):
        self._items: deque = deque()
        self._ready = threading.Condition()

    def put(self, item: object) -> None:
        with self._ready:
            if isinstance(item, FrameEvent) and self._items and isinstance(self._items[-1], FrameEvent):
                self._items[-1] = item  # not yet read: the newer frame replaces it
            else:
                self._items.append(item)
            self._ready.notify_all()

    def __iter__(self) -> Iterator:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._items)
                item = self._items.popleft()
            if item is _END:
                return
            yield item


class Job:
    """One turn: ``work()`` gives its events (``run`` is handed the job and publishes them);
    ``said`` is the person's line, shown as waiting until the turn starts."""

    _numbers = itertools.count(1)

    def __init__(self, said: str, work: Callable[[], Iterator], failed: str):
        self.said = said
        self.work = work
        self.failed = failed  # what the person is told if the turn breaks on a bug
        self.number = next(self._numbers)
        self._listeners: list[Listener] = []

    def listen(self) -> Listener:
        listener = Listener()
        self._listeners.append(listener)
        return listener

    def publish(self, item: object) -> None:
        for listener in self._listeners:
            listener.put(item)

    def finish(self) -> None:
        self.publish(_END)
        self._listeners = []  # the readers keep their own buffers; the job keeps none


class TurnQueue:
    """A session's turns, run one at a time in submission order by ``run(job)`` in a worker thread."""

    def __init__(self, name: str, run: Callable[[Job], None], slots: threading.Semaphore,
                 idle: Callable[[], None] | None = None):
        self.name = name
        self._run = run
        self._slots = slots  # turns running at once over all sessions
        self._idle = idle  # called in the worker once the queue is empty, after its turns were answered
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._worker: threading.Thread | None = None
        self._changed = threading.Condition()

    def submit(self, job: Job, on_queued: Callable[[Job], None] | None = None) -> Listener:
        """Queues ``job`` after the turns already there and returns a listener to its events;
        ``on_queued(job)`` is called (with the job listening) when it has to wait for another turn."""
        listener = job.listen()
        with self._changed:
            busy = self._running is not None or bool(self._waiting)
            self._waiting.append(job)
            if busy and on_queued is not None:
                on_queued(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, name=f"turns-{self.name[:8]}", daemon=True)
                self._worker.start()
        return listener

    @property
    def waiting(self) -> list[Job]:
        """Turns submitted and not started yet, in order."""
        with self._changed:
            return list(self._waiting)

    @property
    def busy(self) -> bool:
        """A turn is running or waiting."""
        with self._changed:
            return self._worker is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until no turn is running or waiting; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._worker is None, timeout)

    def _drain(self) -> None:
        while True:
            with self._changed:
                empty = not self._waiting
            if empty and self._idle is not None:
                self._idle()
            with self._changed:
                if not self._waiting:
                    self._worker = None
                    self._changed.notify_all()
                    return
            with self._slots:  # the turn stays listed as waiting until a slot is free
                with self._changed:
                    job = self._running = self._waiting.popleft()
                try:
                    self._run(job)
                except BaseException:  # ``run`` handles a turn's own failures; this is a bug in it
                    logger.exception("turn %d of session %s failed", job.number, self.name)
                finally:
                    with self._changed:
                        self._running = None
                    job.finish()


__all__ = ["Job", "Listener", "TurnQueue"]
