"""RouteCache: matches told from the shape of a path, checked against werkzeug."""
import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule

from orthancd.rest.route_cache import RouteCache

STUDY_1 = "27f7126f-4f66cfc3-2b7a7d6b-4e2e4b5e-9b6c2c2f"
STUDY_2 = "0a9b2a3c-d7d2b1e4-0b4d4a51-3c6b2d7e-1f0e9d8c"
SERIES = "5f1e2d3c-4b5a6978-8796a5b4-c3d2e1f0-0f1e2d3c"
JOB = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"

URL_MAP = Map([
    Rule("/studies/<public_id>", endpoint="get_study", methods=["GET"]),
    Rule("/studies/<public_id>", endpoint="delete_study", methods=["DELETE"]),
    Rule("/studies/<public_id>/series", endpoint="study_series", methods=["GET"]),
    Rule("/studies/<public_id>/merge/<other>", endpoint="merge", methods=["GET"]),
    Rule("/instances/<public_id>/content/<path:path>", endpoint="content", methods=["GET"]),
    Rule("/jobs/<job_id>", endpoint="job", methods=["GET"]),
    Rule("/tools/find", endpoint="find", methods=["POST"]),
    Rule("/system/", endpoint="system", methods=["GET"]),
])


def werkzeug_match(method, path):
    return URL_MAP.bind("localhost", path_info=path, default_method=method).match()


class Counted:
    """werkzeug's match, counting the calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, method, path):
        def match():
            self.calls += 1
            return werkzeug_match(method, path)
        return match


@pytest.mark.parametrize("method, first, second", [
    ("GET", "/studies/" + STUDY_1, "/studies/" + STUDY_2),
    ("DELETE", "/studies/" + STUDY_1, "/studies/" + STUDY_2),
    ("GET", "/studies/%s/series" % STUDY_1, "/studies/%s/series" % STUDY_2),
    ("GET", "/studies/%s/merge/%s" % (STUDY_1, SERIES), "/studies/%s/merge/%s" % (SERIES, STUDY_2)),
    ("GET", "/jobs/" + JOB, "/jobs/" + JOB.replace("1b4e", "ffff")),
    ("GET", "/instances/%s/content/0010-0010" % STUDY_1,
     "/instances/%s/content/0010-0010" % STUDY_2),
    ("POST", "/tools/find", "/tools/find"),
])
def test_same_shape_matched_once(method, first, second):
    cache, counted = RouteCache(), Counted()
    assert cache.match(method, first, counted(method, first)) == werkzeug_match(method, first)
    assert cache.match(method, second, counted(method, second)) == werkzeug_match(method, second)
    assert counted.calls == 1


def test_methods_and_literal_segments_are_part_of_the_shape():
    cache, counted = RouteCache(), Counted()
    for method, path in [("GET", "/studies/" + STUDY_1), ("DELETE", "/studies/" + STUDY_1),
                         ("GET", "/instances/%s/content/0010-0010" % STUDY_1),
                         ("GET", "/instances/%s/content/0008-0018" % STUDY_1)]:
        assert cache.match(method, path, counted(method, path)) == werkzeug_match(method, path)
    assert counted.calls == 4


@pytest.mark.parametrize("first, second", [
    # An ID inside a <path:...> argument that spans several segments.
    ("/instances/%s/content/%s/x" % (STUDY_1, SERIES),
     "/instances/%s/content/%s/x" % (STUDY_1, STUDY_2)),
    # The same ID twice: which argument takes which is not told by the shape.
    ("/studies/%s/merge/%s" % (STUDY_1, STUDY_1), "/studies/%s/merge/%s" % (STUDY_1, STUDY_2)),
])
def test_ambiguous_matches_are_not_remembered(first, second):
    cache, counted = RouteCache(), Counted()
    cache.match("GET", first, counted("GET", first))
    assert cache.match("GET", second, counted("GET", second)) == werkzeug_match("GET", second)
    assert counted.calls == 2


def test_failures_go_through_and_are_not_remembered():
    cache, counted = RouteCache(), Counted()
    for _ in range(2):
        with pytest.raises(NotFound):
            cache.match("GET", "/nothing/" + STUDY_1, counted("GET", "/nothing/" + STUDY_1))
        with pytest.raises(MethodNotAllowed):
            cache.match("PUT", "/studies/" + STUDY_1, counted("PUT", "/studies/" + STUDY_1))
        with pytest.raises(RequestRedirect):
            cache.match("GET", "/system", counted("GET", "/system"))
    assert counted.calls == 6


def test_upper_case_ids_are_literal_segments():
    cache, counted = RouteCache(), Counted()
    upper = "/studies/" + STUDY_1.upper()
    assert cache.match("GET", upper, counted("GET", upper)) == ("get_study",
                                                                {"public_id": STUDY_1.upper()})
    path = "/studies/" + STUDY_2
    assert cache.match("GET", path, counted("GET", path)) == ("get_study", {"public_id": STUDY_2})
    assert counted.calls == 2


def test_bounded():
    cache, counted = RouteCache(max_shapes=2), Counted()
    for i in range(5):
        path = "/studies/x%d" % i
        cache.match("GET", path, counted("GET", path))
    assert len(cache._templates) <= 2
