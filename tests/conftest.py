import os
import shutil
import tempfile
from pathlib import Path

import pytest

from corral.core.io import corral_home
from corral.testing import tiny_model, tiny_tokenizer

# Every test gets a CORRAL_HOME of the session's own, so no test leaves sealed splits (which
# make later training refuse rows) in the user's cache; converted models are shared with the
# user's cache through a link, so the embedded model is converted once per machine.
_USER_MODELS = corral_home() / "models"
_USER_MODELS.mkdir(parents=True, exist_ok=True)
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="corral-test-home-"))
(_SESSION_HOME / "models").symlink_to(_USER_MODELS, target_is_directory=True)
os.environ["CORRAL_HOME"] = str(_SESSION_HOME)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)  # unlinks the link, keeps the models


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model():
    return tiny_model()


@pytest.fixture
def listening_port():
    """A loopback port something listens on (the sandbox escape tests try to reach it)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()
