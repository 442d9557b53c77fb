"""The bench: bench files, bring-up and tear-down, simulated devices behind real interfaces."""

from rig.bench.bench import Bench, BenchError
from rig.bench.model import BenchFileError, BenchSpec, load_bench

__all__ = ["Bench", "BenchError", "BenchFileError", "BenchSpec", "load_bench"]
