"""finf: training-data influence as a hypothesis test (f-influence, f-INE)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("finf")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
