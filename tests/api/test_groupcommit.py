"""Group commit: requests that arrive while a transaction commits share the next one, each gets
its own answer, and a failure answers every request of its batch and no other."""

from __future__ import annotations

import threading
import time

import pytest

from telepay.api.groupcommit import BatchFailed, GroupCommit


class Recorder:
    """A commit function that records its batches and can be held at the start of one."""

    def __init__(self, fail_on=None, delay=0.0):
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.running = 0
        self.most_running = 0
        self.fail_on = fail_on
        self.delay = delay
        self.used: list[int] = []
        self.opened: list[int] = []
        self.closed: list[tuple[int, str | None]] = []
        self.fail_open = False
        self._lock = threading.Lock()

    def open(self):
        with self._lock:
            if self.fail_open:
                self.fail_open = False
                raise ConnectionRefusedError("no connection")
            self.opened.append(len(self.opened) + 1)
            return self.opened[-1]

    def close(self, resource, failure):
        with self._lock:
            self.closed.append((resource, type(failure).__name__ if failure else None))

    def group(self, **options):
        return GroupCommit(self, open=self.open, close=self.close, **options)

    def __call__(self, resource, items):
        with self._lock:
            self.batches.append(list(items))
            self.used.append(resource)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.started.set()
        self.release.wait(10)
        time.sleep(self.delay)
        try:
            if self.fail_on is not None and self.fail_on in items:
                raise ConnectionError("database went away")
            return [ValueError(f"bad {item}") if item < 0 else item * 10 for item in items]
        finally:
            with self._lock:
                self.running -= 1


def submit_all(group, items, answers):
    def one(item):
        try:
            answers[item] = group.submit(item)
        except Exception as error:  # noqa: BLE001 - the answer under test
            answers[item] = error

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads


def wait_queued(group, count):
    deadline = time.monotonic() + 10
    while len(group._queue) < count:
        assert time.monotonic() < deadline, "requests never queued"
        time.sleep(0.001)


def test_a_lone_request_commits_alone():
    recorder = Recorder()
    group = recorder.group()
    assert group.submit(7) == 70
    assert recorder.batches == [[7]]


def test_requests_arriving_during_a_commit_share_the_next_one():
    recorder = Recorder()
    group = recorder.group(leaders=1)
    recorder.release.clear()
    answers = {}
    first = submit_all(group, [1], answers)
    assert recorder.started.wait(5)
    rest = submit_all(group, range(2, 12), answers)
    wait_queued(group, 10)
    recorder.release.set()
    for thread in first + rest:
        thread.join(10)
    assert recorder.batches[0] == [1]
    assert sorted(recorder.batches[1]) == list(range(2, 12)) and len(recorder.batches) == 2
    assert answers == {item: item * 10 for item in range(1, 12)}


def test_batches_are_capped_and_the_queue_drains():
    recorder = Recorder()
    group = recorder.group(leaders=1, max_batch=4)
    recorder.release.clear()
    answers = {}
    threads = submit_all(group, [0], answers)
    assert recorder.started.wait(5)
    threads += submit_all(group, range(1, 11), answers)
    wait_queued(group, 10)
    recorder.release.set()
    for thread in threads:
        thread.join(10)
    assert [len(batch) for batch in recorder.batches] == [1, 4, 4, 2]
    assert answers == {item: item * 10 for item in range(11)}


def test_each_request_gets_its_own_refusal():
    recorder = Recorder()
    group = recorder.group(leaders=1)
    recorder.release.clear()
    answers = {}
    threads = submit_all(group, [1], answers)
    assert recorder.started.wait(5)
    threads += submit_all(group, [-2, 3], answers)
    wait_queued(group, 2)
    recorder.release.set()
    for thread in threads:
        thread.join(10)
    assert answers[1] == 10 and answers[3] == 30
    assert isinstance(answers[-2], ValueError) and str(answers[-2]) == "bad -2"


def test_a_failed_batch_is_committed_again_item_by_item_so_only_the_bad_item_fails():
    recorder = Recorder(fail_on=5)
    group = recorder.group(leaders=1)
    recorder.release.clear()
    answers = {}
    threads = submit_all(group, [1], answers)
    assert recorder.started.wait(5)
    threads += submit_all(group, [4, 5, 6, 7, 8, 9, 10], answers)
    wait_queued(group, 7)
    recorder.release.set()
    for thread in threads:
        thread.join(10)
    assert answers[1] == 10
    assert {item: answers[item] for item in (4, 6, 7, 8, 9, 10)} == {4: 40, 6: 60, 7: 70, 8: 80, 9: 90, 10: 100}
    assert isinstance(answers[5], BatchFailed) and isinstance(answers[5].__cause__, ConnectionError)
    assert sorted(len(batch) for batch in recorder.batches) == [1] * 8 + [7]  # the batch, then alone
    # The failed batch's resource and the one the bad item failed on are closed, never reused.
    assert [failure for _, failure in recorder.closed] == ["ConnectionError", "ConnectionError"]
    assert group.submit(11) == 110  # the lead was passed on: later requests are served


def test_when_every_item_fails_alone_each_gets_its_own_failure():
    recorder = Recorder()
    recorder.fail_on = 0
    group = recorder.group(leaders=1)
    recorder.release.clear()
    answers = {}
    threads = submit_all(group, [1], answers)
    assert recorder.started.wait(5)
    recorder.fail_open = True  # the database is down: the batch fails, and so does every retry's open
    original = recorder.__call__

    def failing(resource, items):
        if items != [1]:
            raise ConnectionError("database went away")
        return original(resource, items)

    group._commit = failing
    threads += submit_all(group, [4, 5, 6], answers)
    wait_queued(group, 3)
    recorder.release.set()
    for thread in threads:
        thread.join(10)
    failures = [answers[item] for item in (4, 5, 6)]
    assert all(isinstance(failure, BatchFailed) for failure in failures)
    assert len({id(failure) for failure in failures}) == 3  # one exception per request


@pytest.mark.parametrize("leaders", [1, 2, 3])
def test_at_most_the_given_number_of_commits_run_at_once(leaders):
    recorder = Recorder(delay=0.005)
    group = recorder.group(leaders=leaders)
    answers = {}
    threads = submit_all(group, range(60), answers)
    for thread in threads:
        thread.join(30)
    assert answers == {item: item * 10 for item in range(60)}
    assert sorted(item for batch in recorder.batches for item in batch) == list(range(60))
    assert recorder.most_running == leaders  # 60 requests at once keep every leader busy


def test_the_resource_travels_with_the_lead_and_is_kept_when_the_queue_runs_dry():
    recorder = Recorder()
    group = recorder.group(leaders=1, max_batch=2)
    recorder.release.clear()
    answers = {}
    threads = submit_all(group, [0], answers)
    assert recorder.started.wait(5)
    threads += submit_all(group, range(1, 7), answers)
    wait_queued(group, 6)
    recorder.release.set()
    for thread in threads:
        thread.join(10)
    assert len(recorder.batches) == 4 and recorder.used == [1, 1, 1, 1]  # opened once, handed on
    assert recorder.closed == []
    assert group.submit(9) == 90 and recorder.used[-1] == 1 and recorder.opened == [1]  # kept for later
    group.close_idle()
    assert recorder.closed == [(1, None)]
    assert group.submit(10) == 100 and recorder.used[-1] == 2  # after close_idle a new one is opened


def test_no_more_resources_are_kept_than_there_are_leaders():
    recorder = Recorder(delay=0.005)
    group = recorder.group(leaders=2)
    for _ in range(5):
        answers = {}
        for thread in submit_all(group, range(40), answers):
            thread.join(30)
        assert answers == {item: item * 10 for item in range(40)}
    assert len(recorder.opened) == 2 and recorder.closed == []  # two leaders, two resources, reused
    assert len(group._idle) == 2


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_resource_idle_too_long_is_checked_and_replaced_if_dead():
    recorder = Recorder()
    checked = []

    def check(resource):
        checked.append(resource)
        if resource == 1:
            raise ConnectionResetError("server closed the connection")

    clock = Clock()
    group = recorder.group(leaders=1, check=check, recheck_after=10, monotonic=clock)
    assert group.submit(1) == 10
    clock.now += 9
    assert group.submit(2) == 20 and checked == []  # used recently: no check, no round trip
    clock.now += 11
    assert group.submit(3) == 30  # idle past the limit: checked, found dead, replaced
    assert checked == [1] and recorder.closed == [(1, "ConnectionResetError")] and recorder.used[-1] == 2
    clock.now += 60
    assert group.submit(4) == 40 and checked == [1, 2] and recorder.used[-1] == 2  # alive: kept


def test_a_failed_batch_closes_its_resource_and_the_next_leader_opens_another():
    recorder = Recorder(fail_on=5)
    group = recorder.group(leaders=1)
    recorder.release.clear()
    answers = {}
    threads = submit_all(group, [5], answers)
    assert recorder.started.wait(5)
    threads += submit_all(group, [6, 7], answers)
    wait_queued(group, 2)
    recorder.release.set()
    for thread in threads:
        thread.join(10)
    assert isinstance(answers[5], BatchFailed) and answers[6] == 60 and answers[7] == 70
    assert recorder.used == [1, 2] and recorder.closed == [(1, "ConnectionError")]


def test_a_resource_that_cannot_be_opened_fails_only_that_batch():
    recorder = Recorder()
    group = recorder.group(leaders=1)
    recorder.fail_open = True
    with pytest.raises(BatchFailed) as failed:
        group.submit(1)
    assert isinstance(failed.value.__cause__, ConnectionRefusedError) and recorder.closed == []
    assert group.submit(2) == 20 and recorder.opened == [1]
