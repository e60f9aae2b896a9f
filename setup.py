"""Build hook: the OTLP conversion hot path is compiled with mypyc.

Everything is configured in ``pyproject.toml``; this file only adds the
compiled modules. ``collectors/otlp_convert.py`` stays plain, typed Python
(mypy checks it like the rest); mypyc turns it into a C extension that is
imported in its place, ~15% less CPU per span at the edge (``bench/pipeline_cost.py``).
Without a C compiler, or with ``APIWARD_PURE_PYTHON=1``, the package installs
as pure Python and behaves the same, only slower.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

COMPILED = ["collectors/otlp_convert.py"]


def ext_modules() -> list:
    if os.environ.get("APIWARD_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify

        return mypycify(COMPILED, opt_level="3")
    except Exception as e:  # noqa: BLE001 - fall back to pure Python, say why
        print(f"apiward: not compiling {COMPILED} ({e}); installing pure Python", file=sys.stderr)
        return []


setup(ext_modules=ext_modules())
