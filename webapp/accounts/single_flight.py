"""Single flight: concurrent calls for one key share one run of the work. No Flask here.

A script or rollout tool calling the API in parallel with one account sends the same
credentials several times at once; each would cost a bcrypt check and a place under the login
limits. Instead the first call checks, and the others wait for its answer (or its exception).
Nothing is kept after the run: a later call runs again.
"""

import threading


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class SingleFlight:
    """Run ``work`` once per key at a time; callers arriving meanwhile share its outcome."""

    def __init__(self):
        self._lock = threading.Lock()
        self._flights: dict = {}
        self.runs = 0  # how many times work actually ran
        self.shared = 0  # how many calls waited for another's run instead

    def run(self, key, work):
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
                self.runs += 1
            else:
                self.shared += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = work()
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.value
