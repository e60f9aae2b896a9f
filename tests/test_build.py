"""The compiled OTLP conversion (setup.py builds it with mypyc) is the current source."""

from __future__ import annotations

from pathlib import Path

import pytest

import collectors.otlp_convert as conv


def test_compiled_conversion_is_not_stale() -> None:
    compiled = Path(conv.__file__ or "")
    if compiled.suffix != ".so":
        pytest.skip("collectors/otlp_convert.py runs as pure Python (no C compiler at install, "
                    "or APIWARD_PURE_PYTHON=1): nothing compiled to go stale")
    source = compiled.parent / "otlp_convert.py"
    assert compiled.stat().st_mtime >= source.stat().st_mtime, (
        f"{compiled.name} is older than {source}: the tests would run the old code; "
        "run `make setup` (or `pip install -e .`) to rebuild it"
    )
