"""Reduction operators: ``col.Sum``, ``col.Average``, ``col.Max``, ``col.Min``, ``col.Product``.

Each operator is an object holding the numpy ufunc that combines two partial results in place
(``ufunc(a, b, out=a)``) and the matching MPI operator for the library's own collectives.

Average is Sum followed by a division by the number of ranks, on the reduced data only (the
ring divides its own segment before the allgather, so it costs 1/P of a pass). Average of an
integer dtype raises ``TypeError``: floor division would silently truncate, which the contract
forbids ("nothing is silently cast or truncated"); use ``Sum`` and divide yourself.

float16 is combined by numpy's float16 arithmetic: each addition is computed in float32 and
rounded back to float16 (partial sums travel as float16, so the wire traffic stays 2 bytes per
element). Every element's final value is computed once (ring) or by the same operations in the
same operand order on every rank (recursive doubling), so results are bitwise identical on all
ranks.

Product multiplies with ``np.multiply`` in the same orders, so it is exact for integers
(wrapping on overflow exactly as numpy's and C's fixed-width multiplication do) on every
algorithm; floats are bitwise identical on all ranks as for Sum.
"""

from __future__ import annotations

import numpy as np

from .process import mpi


class ReduceOp:
    """A reduction operator. Compare with ``is`` or ``==``; ``str(op)`` is its name."""

    __slots__ = ("name", "ufunc", "code", "average", "_mpi")

    def __init__(self, name: str, ufunc, code: int, average: bool = False):
        self.name = name
        self.ufunc = ufunc
        self.code = code
        self.average = average
        self._mpi = None

    def mpi_op(self):
        """The MPI operator (looked up once: it is on the path of every "mpi" call)."""
        if self._mpi is None:
            MPI = mpi()
            self._mpi = {"Sum": MPI.SUM, "Average": MPI.SUM, "Max": MPI.MAX, "Min": MPI.MIN,
                         "Product": MPI.PROD}[self.name]
        return self._mpi

    def __repr__(self):
        return f"col.{self.name}"

    __str__ = __repr__

    def __reduce__(self):  # pickles as the singleton
        return (_by_name, (self.name,))


Sum = ReduceOp("Sum", np.add, 1)
Average = ReduceOp("Average", np.add, 2, average=True)
Max = ReduceOp("Max", np.maximum, 3)
Min = ReduceOp("Min", np.minimum, 4)
Product = ReduceOp("Product", np.multiply, 5)

OPS = {op.name: op for op in (Sum, Average, Max, Min, Product)}


def _by_name(name: str) -> ReduceOp:
    return OPS[name]


def as_op(op) -> ReduceOp:
    """``op`` as a ReduceOp; also accepts the names "sum", "average"/"avg"/"mean", "max", "min",
    "product"/"prod"."""
    if isinstance(op, ReduceOp):
        return op
    if isinstance(op, str):
        key = {"sum": "Sum", "average": "Average", "avg": "Average", "mean": "Average",
               "max": "Max", "min": "Min", "product": "Product", "prod": "Product"}.get(op.lower())
        if key:
            return OPS[key]
    raise ValueError(f"unknown reduction op {op!r}: use col.Sum, col.Average, col.Max, col.Min "
                     "or col.Product")


def check_dtype(op: ReduceOp, dtype: np.dtype):
    """TypeError when ``op`` cannot be applied exactly to ``dtype``."""
    if op.average and dtype.kind in "iu":
        raise TypeError(f"col.Average of integer dtype {dtype} would truncate; "
                        "use op=col.Sum and divide, or reduce a float dtype")


def with_average(op, average):
    """Horovod's deprecated ``average=`` beside ``op`` (True: Average, False: Sum)."""
    if average is None:
        return op
    if op is not Average:
        raise ValueError(f"give op= or Horovod's average=, not both (op={op!r}, "
                         f"average={average!r})")
    return Average if average else Sum
