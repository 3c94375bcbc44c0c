"""The seed's module path of the result exporters: a thin re-export of
:mod:`distwm.benchmarks.result_tables` (CSV, markdown and LaTeX tables)."""

from distwm.benchmarks.result_tables import *  # noqa: F401,F403
from distwm.benchmarks.result_tables import __all__  # noqa: F401
