"""Thread pools for tests: the work they are given runs when the test says."""


class HeldPool:
    """A pool (``callInThread``) that runs what it is given only when told
    (``run_all``), in the test's thread."""

    def __init__(self):
        self.held = []

    def callInThread(self, function, *args):
        self.held.append((function, args))

    def run_all(self):
        while self.held:
            function, args = self.held.pop(0)
            function(*args)
