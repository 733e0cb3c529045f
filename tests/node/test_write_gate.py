"""Changes in progress take at most half a worker's threads, a few more queue briefly, and at
least one thread is always left for probes and pages (issues 15.12 and 16.1)."""

import threading

from webapp.node.db import MIN_THREADS, WriteGate, threads_problem


def test_permits_and_queue_leave_threads_for_probes():
    for threads in range(MIN_THREADS, 257):  # what PIPELINE_WORKER_THREADS allows
        gate = WriteGate(threads)
        assert 1 <= gate.permits <= threads // 2, threads
        assert threads - gate.permits - gate.queue >= max(1, threads // 4), threads


def test_one_thread_is_refused_and_two_are_enough():
    assert "leaves no thread for /healthz" in threads_problem(1)
    assert threads_problem(2) is None


def test_a_burst_queues_for_a_permit_and_the_rest_is_refused_at_once():
    gate = WriteGate(8, wait=30.0)  # 4 permits, 2 queue places
    assert all(gate.acquire(blocking=False) for _ in range(4))
    queued, got = threading.Barrier(3), []

    def queue():
        queued.wait(timeout=30)
        got.append(gate.acquire(blocking=False))

    waiting = [threading.Thread(target=queue) for _ in range(2)]
    for thread in waiting:
        thread.start()
    queued.wait(timeout=30)
    # Both queue places are taken once both threads wait inside acquire: poll for it.
    for _ in range(3000):
        if gate._queue._value == 0:
            break
        threading.Event().wait(0.01)
    assert gate.acquire(blocking=False) is False  # no permit, no queue place: refused at once
    gate.release()
    gate.release()  # two changes end: the two queued ones go on
    for thread in waiting:
        thread.join(timeout=30)
    assert got == [True, True]
