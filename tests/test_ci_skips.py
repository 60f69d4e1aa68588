"""Under CI only gpu-marked tests may skip: tests/conftest.py's hooks, run by pytest itself."""

from __future__ import annotations

import pytest
from conftest import REPO

pytest_plugins = ["pytester"]

TESTS = """
import pytest

def test_plain_skip():
    pytest.skip("the [hf] extra is not installed")

@pytest.mark.gpu
def test_gpu_skip():
    pytest.skip("needs a CUDA GPU")

@pytest.mark.skipif(True, reason="no chromium on PATH")
def test_skipif_mark():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
"""
MODULE_SKIP = """
import pytest
pytest.importorskip("no_such_module_anywhere", reason="the [semantic] extra is not installed")

def test_never_collected():
    pass
"""


def _run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> pytest.RunResult:
    """Run a small suite with this repository's conftest.py, with CI set to `ci` or unset."""
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\nmarkers =\n    gpu: needs a GPU\n")
    pytester.makepyfile(test_suite=TESTS, test_module_skip=MODULE_SKIP)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_subprocess(
        "-rfEs", "-p", "no:cacheprovider", "--continue-on-collection-errors", timeout=120
    )


def test_under_ci_a_skip_without_the_gpu_mark_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, monkeypatch, "true")
    # A skip in a test fails it; a skip at setup (skipif) or collection is an error.
    result.assert_outcomes(passed=1, failed=1, skipped=1, xfailed=1, errors=2)
    assert result.ret != 0
    output = result.stdout.str()
    assert (
        "test_suite.py::test_plain_skip: skipped under CI (the [hf] extra is not installed)"
        in output
    )
    assert "test_suite.py::test_skipif_mark: skipped under CI (no chromium on PATH)" in output
    assert "test_module_skip.py: skipped under CI" in output
    assert "the [semantic] extra is not installed" in output
    assert "SKIPPED [1] test_suite.py" in output and "needs a CUDA GPU" in output  # gpu: a skip


def test_outside_ci_skips_stay_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, monkeypatch, None)
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)
    assert result.ret == 0
    result = _run(pytester, monkeypatch, "false")
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)
