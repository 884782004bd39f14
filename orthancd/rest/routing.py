"""The Klein app's URL map, built without its URL builders.

werkzeug compiles two URL builders per rule when the rule is added (Python
source generated through ``ast`` and compiled): about 0.7 ms a rule, a
fifth of a second for the REST API's ~300 routes at every start-up.  The
builders serve ``url_for`` and redirects built from endpoints, which
orthancd never asks for: requests are only matched.  In ``RouteMap`` a
rule's builders are compiled the first time one is called instead, with
werkzeug's own code, so building URLs would still work, only later.
"""
from klein import Klein
from werkzeug.routing import Map


def _deferred_builder_compiler(rule):
    """Stands for ``rule._compile_builder``: what werkzeug's ``Rule.compile``
    binds as the rule's builder is a function that compiles the real one
    on its first call."""
    compile_builder = type(rule)._compile_builder

    def deferred(append_unknown=True):
        compiled = []

        def build(self, *args, **kwargs):
            if not compiled:
                compiled.append(compile_builder(self, append_unknown).__get__(self, None))
            return compiled[0](*args, **kwargs)
        return build
    return deferred


class RouteMap(Map):
    def add(self, rulefactory):
        for rule in rulefactory.get_rules(self):
            rule._compile_builder = _deferred_builder_compiler(rule)
        super().add(rulefactory)


class RestApp(Klein):
    """A Klein app whose routes go in a ``RouteMap``."""

    def __init__(self):
        super().__init__()
        # Klein builds its map in its constructor and offers no other way
        # to choose it.
        self._url_map = RouteMap()
