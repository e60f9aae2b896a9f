"""Build hook: the OTLP conversion hot path is compiled with mypyc.

Everything else is configured in ``pyproject.toml``; this file only adds the
compiled module. ``collectors/otlp_convert.py`` stays plain, typed Python
(mypy checks it like the rest); mypyc turns it into a C extension that is
imported in its place: ~15% less CPU per span at the edge
(``bench/pipeline_cost.py``). Without a working C compiler, or with
``APIWARD_PURE_PYTHON=1``, the package installs as pure Python and behaves
the same, only slower.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = ["collectors/otlp_convert.py"]


class OptionalBuildExt(build_ext):
    """Builds the compiled modules, or none of them when the compiler fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - any build failure means: pure Python
            for ext in self.extensions:
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)  # a shim without its library would not import
            self.extensions = []
            print(f"apiward: could not compile {COMPILED} ({e}); installing pure Python",
                  file=sys.stderr)


def ext_modules() -> list:
    if os.environ.get("APIWARD_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify

        return mypycify(COMPILED, opt_level="3")
    except Exception as e:  # noqa: BLE001 - fall back to pure Python, say why
        print(f"apiward: not compiling {COMPILED} ({e}); installing pure Python", file=sys.stderr)
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
