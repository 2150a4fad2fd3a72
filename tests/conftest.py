import signal

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _restore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def interruptible():
    """preexec_fn for a child process that a test stops with SIGINT, as Ctrl-C would: a shell
    that starts the tests in the background makes them ignore SIGINT (POSIX), children inherit
    that, and a Python started with SIGINT ignored never raises KeyboardInterrupt."""
    return _restore_sigint
