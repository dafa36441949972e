"""The catalog's allocator settings at start-up (glibc's mallopt)."""

from __future__ import annotations

import platform

import pytest

from modelhub.catalog import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
def test_the_settings_apply_unless_the_operator_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in allocator.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert allocator.tune_allocator()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4096")
    assert not allocator.tune_allocator()
