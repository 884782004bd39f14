import pytest

from tests.support.daemon import Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One orthancd shared by the tests of a module (they must tolerate each other's data)."""
    d = Daemon(tmp_path_factory.mktemp("orthancd")).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def rest(daemon):
    return daemon.client()


@pytest.fixture
def fresh_daemon(tmp_path):
    """A daemon of the test's own, for tests that need an empty server."""
    d = Daemon(tmp_path).start()
    yield d
    d.stop()
