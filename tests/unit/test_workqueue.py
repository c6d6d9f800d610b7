"""The operator's work queue: coalescing, one worker per key, delayed adds, with a hand-driven clock."""

import threading

from modeldeploy.handlers.workqueue import WorkQueue


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_a_burst_of_adds_is_processed_once():
    q = WorkQueue(Clock())
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert [q.get(0), q.get(0), q.get(0)] == ["a", "b", None]


def test_a_key_added_while_processing_comes_back_only_after_done():
    q = WorkQueue(Clock())
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")
    assert q.get(0) is None  # never to a second worker at once
    q.done("a")
    assert q.get(0) == "a"
    q.done("a")
    assert q.get(0) is None


def test_delayed_add_waits_for_its_time_and_the_earliest_request_wins():
    clock = Clock()
    q = WorkQueue(clock)
    q.add("a", after=10)
    q.add("a", after=30)  # later than pending: ignored
    q.add("a", after=5)  # earlier: wins
    assert q.get(0) is None
    clock.t += 5
    assert q.get(0) == "a"
    q.done("a")
    clock.t += 30
    assert q.get(0) is None  # the superseded entries are gone


def test_an_immediate_add_supersedes_a_pending_delayed_one():
    clock = Clock()
    q = WorkQueue(clock)
    q.add("a", after=10)
    q.add("a")
    assert q.get(0) == "a"
    q.done("a")
    clock.t += 10
    assert q.get(0) is None


def test_a_delay_requested_while_processing_survives_done():
    clock = Clock()
    q = WorkQueue(clock)
    q.add("a")
    assert q.get(0) == "a"
    q.add("a", after=2)  # the reconcile asks for a later look
    q.done("a")
    assert q.get(0) is None
    clock.t += 2
    assert q.get(0) == "a"


def test_forget_drops_a_pending_delayed_look():
    clock = Clock()
    q = WorkQueue(clock)
    q.add("a", after=1)
    q.forget("a")
    clock.t += 1
    assert q.get(0) is None and len(q) == 0


def test_close_wakes_a_blocked_worker():
    q = WorkQueue()
    got = []
    worker = threading.Thread(target=lambda: got.append(q.get()))
    worker.start()
    q.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and got == [None]


def test_get_blocks_until_another_thread_adds():
    q = WorkQueue()
    got = []
    worker = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
    worker.start()
    q.add("x")
    worker.join(timeout=10)
    assert got == ["x"]


def test_low_priority_keys_wait_behind_every_ordinary_add():
    q = WorkQueue(Clock())
    for key in ("settled-1", "settled-2", "settled-3"):
        q.add(key, low=True)
    q.add("edited")
    assert q.get(0) == "edited"
    assert q.get(0) == "settled-1"
    q.add("new")  # arrives during the pass: goes before the rest of it
    assert [q.get(0), q.get(0), q.get(0), q.get(0)] == ["new", "settled-2", "settled-3", None]


def test_an_ordinary_add_moves_a_low_key_up_once():
    q = WorkQueue(Clock())
    q.add("a", low=True)
    q.add("b", low=True)
    q.add("b")
    assert len(q) == 2
    assert [q.get(0), q.get(0), q.get(0)] == ["b", "a", None]  # b's stale low entry is skipped


def test_a_low_add_never_demotes_or_duplicates():
    clock = Clock()
    q = WorkQueue(clock)
    q.add("a")
    q.add("a", low=True)
    q.add("b", low=True)
    assert [q.get(0), q.get(0)] == ["a", "b"]
    q.add("a", low=True)  # being processed: no second look queued
    q.done("a")
    assert q.get(0) is None
    q.add("c", after=5)
    q.add("c", low=True)  # a delayed look is pending: it will run
    clock.t += 5
    assert [q.get(0), q.get(0)] == ["c", None]


def test_a_low_key_promoted_processed_and_queued_low_again_runs_once():
    q = WorkQueue(Clock())
    q.add("a", low=True)
    q.add("a")
    assert q.get(0) == "a"
    q.done("a")
    q.add("a", low=True)
    assert [q.get(0), q.get(0)] == ["a", None]
