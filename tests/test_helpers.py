"""The suite's own rules: data that CI must have is never skipped there."""

from __future__ import annotations

import pytest

from helpers import need_shared_data


def test_missing_development_data_fails_in_ci_and_skips_elsewhere(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-data"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        need_shared_data(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not found"):
        need_shared_data(missing)
    assert need_shared_data(tmp_path) == tmp_path
