import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny import make_tiny_pair  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: one torch thread is ~3x faster than two
    oversubscribed ones. Test packages that want it use it autouse."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    return make_tiny_pair(tmp_path_factory.mktemp("tiny_pair"))


@pytest.fixture(scope="session")
def long_pair(tmp_path_factory):
    """The tiny pair with a context that holds the study data's longest prompts (the timed
    stage decodes them whole)."""
    return make_tiny_pair(tmp_path_factory.mktemp("long_pair"), context=4096)


@pytest.fixture(scope="session")
def mismatched_pair(tmp_path_factory):
    return make_tiny_pair(tmp_path_factory.mktemp("mismatched_pair"), mismatched=True)


@pytest.fixture
def cli(capsys):
    """Run ``specfair ARGV...`` in this process: returns ``(exit_code, stdout, stderr)``."""
    from specfair.cli import main

    def run(*argv):
        capsys.readouterr()
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run
