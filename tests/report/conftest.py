import pytest
from synth_run import make_run


@pytest.fixture
def run_dir(tmp_path):
    """A synthetic run: baseline + uniform (benchmarked) + balanced (estimated only)."""
    return make_run(tmp_path / "run")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The synthetic run with its report built once: (run_dir, md_path, html_path)."""
    from specfair.report import build_report

    root = make_run(tmp_path_factory.mktemp("built") / "run")
    return (root, *build_report(root))
