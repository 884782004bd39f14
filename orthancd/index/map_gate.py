"""Read transactions and the growth of the LMDB map take turns.

LMDB lets the map grow (``set_mapsize``) only while no transaction is open
in the process.  Every read transaction of the index is opened through the
gate; growing the map closes the gate to new readers, waits for the open
ones to finish, grows, and opens the gate again.  A thread that already
reads may open nested read transactions meanwhile (it holds the gate open
until its outer one ends, so waiting there could only deadlock)."""
import threading


class MapGate:

    def __init__(self):
        self._condition = threading.Condition()
        self._readers = 0
        self._resizing = False
        self._local = threading.local()

    def reading(self, env):
        """A context manager giving a read transaction of ``env``."""
        return _Reading(self, env)

    def _enter(self):
        depth = getattr(self._local, "depth", 0)
        with self._condition:
            if depth == 0:
                while self._resizing:
                    self._condition.wait()
            self._readers += 1
        self._local.depth = depth + 1

    def _leave(self):
        self._local.depth -= 1
        with self._condition:
            self._readers -= 1
            if self._readers == 0 and self._resizing:
                self._condition.notify_all()

    def resizing(self):
        """A context manager within which no read transaction is open."""
        return _Resizing(self)


class _Reading:
    __slots__ = ("_gate", "_env", "_txn")

    def __init__(self, gate, env):
        self._gate = gate
        self._env = env
        self._txn = None

    def __enter__(self):
        self._gate._enter()
        try:
            self._txn = self._env.begin(buffers=False)
        except BaseException:
            self._gate._leave()
            raise
        return self._txn

    def __exit__(self, *exc_info):
        try:
            self._txn.abort()  # read-only: nothing to commit
        finally:
            self._gate._leave()


class _Resizing:
    __slots__ = ("_gate",)

    def __init__(self, gate):
        self._gate = gate

    def __enter__(self):
        gate = self._gate
        with gate._condition:
            while gate._resizing:
                gate._condition.wait()
            gate._resizing = True
            while gate._readers:
                gate._condition.wait()

    def __exit__(self, *exc_info):
        gate = self._gate
        with gate._condition:
            gate._resizing = False
            gate._condition.notify_all()
