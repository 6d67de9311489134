"""Compile every CUDA kernel of dlsys.backend.cuda to PTX, for the argument types the
device passes at run time, WITHOUT a GPU (needs only NVVM/NVRTC, e.g. the numba-cuda[cu12]
extra). The simulator runs kernels as Python, so it cannot catch GPU typing errors (e.g. a
branch indexing an array with a float); this does. Run by tests/test_cuda_ptx.py in a
subprocess with the simulator off; prints "OK <count>" or exits non-zero naming the kernel.

    NUMBA_ENABLE_CUDASIM=0 python tests/cuda_ptx_check.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numba
import numpy as np
from numba import types

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def arr(dt):
    return types.Array(numba.from_dtype(np.dtype(dt)), 1, "C")


def sc(dt):
    return numba.from_dtype(np.dtype(dt))


I = types.int64  # noqa: E741
B = types.boolean
FLOATS = ("float32", "float64")


def cases(K, KN, MM, OPT):
    """(name, python function, argument types) for every kernel and dtype the device uses."""
    out = []
    add = out.append
    for op in K.UNARY_FUNCS:
        if op == "bitwise_not":  # integers only (bool takes logical_not)
            for dt in ("int32", "int64"):
                add((f"unary {op} {dt}", K.unary_kernel(op), (arr(dt), arr(dt), I)))
            continue
        if op == "logical_not":
            add((f"unary {op} bool", K.unary_kernel(op), (arr("bool"), arr("bool"), I)))
            continue
        for dt in FLOATS:
            add((f"unary {op} {dt}", K.unary_kernel(op), (arr(dt), arr(dt), I)))
        if op in ("neg", "abs", "sign", "relu"):
            for dt in ("int32", "int64"):
                add((f"unary {op} {dt}", K.unary_kernel(op), (arr(dt), arr(dt), I)))
        else:
            add((f"unary {op} int64->float64", K.unary_kernel(op),
                 (arr("int64"), arr("float64"), I)))
    compare = ("eq", "ne", "lt", "le", "gt", "ge")
    bitwise = ("bitwise_and", "bitwise_or", "bitwise_xor")
    for op in bitwise:
        for dt in ("bool", "int32", "int64"):
            add((f"binary {op} {dt}", K.binary_kernel(op), (arr(dt), arr(dt), arr(dt), I)))
    for op in ("eq", "ne"):  # any() / all() of bool tensors compare them with 0
        add((f"scalar {op} bool", K.scalar_kernel(op, False),
             (arr("bool"), sc("int64"), arr("bool"), I)))
    for op in K.BINARY_FUNCS:
        if op in bitwise:
            continue
        for dt in FLOATS + ("int32", "int64"):
            if (op.endswith("_int") or op in K.INT_VARIANTS) and \
                    op.endswith("_int") != (dt[0] == "i"):
                continue  # the device takes the _int variant exactly for integers
            res = "bool" if op in compare else ("float64" if op == "div" and dt[0] == "i"
                                                 else dt)
            add((f"binary {op} {dt}", K.binary_kernel(op), (arr(dt), arr(dt), arr(res), I)))
            for rev in (False, True):
                add((f"scalar {op} {dt} rev={rev}", K.scalar_kernel(op, rev),
                     (arr(dt), sc(dt), arr(res), I)))
    for op in K.BACKWARD_FUNCS:
        for dt in FLOATS:
            add((f"backward {op} {dt}", K.binary_kernel(op, "backward"),
                 (arr(dt), arr(dt), arr(dt), I)))
    for dt in FLOATS + ("int64", "bool"):
        add((f"fill {dt}", K.fill_kernel, (arr(dt), sc(dt), I)))
        add((f"where {dt}", K.where_kernel, (arr("bool"), arr(dt), arr(dt), arr(dt), I)))
    for a, b in [("float32", "int64"), ("int64", "float32"), ("bool", "float32"),
                 ("float32", "float16"), ("float16", "float32"), ("float64", "int32")]:
        add((f"cast {a}->{b}", K.cast_kernel, (arr(a), arr(b), I)))
    add(("cast float32->bool", K.cast_bool_kernel, (arr("float32"), arr("bool"), I)))
    for nd in (1, 2, 3, 4):
        tup = types.UniTuple(I, nd)
        for dt in ("float32", "int64", "bool"):
            add((f"gather {nd}d {dt}", K.gather_strided_kernel,
                 (arr(dt), arr(dt), tup, tup, I, I)))
        add((f"scatter_add {nd}d", K.scatter_add_strided_kernel,
             (arr("float32"), arr("float32"), tup, tup, I, I)))
        add((f"scatter {nd}d", K.scatter_strided_kernel,
             (arr("float32"), arr("float32"), tup, tup, I, I)))
    for dt in FLOATS + ("int64",):
        add((f"take {dt}", K.take_kernel, (arr(dt), arr("int64"), arr(dt), I)))
        add((f"put {dt}", K.put_kernel, (arr(dt), arr("int64"), arr(dt), I)))
        add((f"take_rows {dt}", K.take_rows_kernel, (arr(dt), arr("int64"), arr(dt), I, I, I)))
        add((f"index_add_flat {dt}", K.index_add_flat_kernel,
             (arr(dt), arr("int64"), arr(dt), I)))
        add((f"index_add_rows {dt}", K.index_add_rows_kernel,
             (arr(dt), arr("int64"), arr(dt), I, I, I)))
        add((f"copy_block {dt}", K.copy_block_kernel, (arr(dt), arr(dt), I, I, I, I)))
        add((f"row_sum {dt}", K.row_sum_kernel(np.dtype(dt).str),
             (arr(dt), arr(dt), I, I, sc(dt))))
        for is_min in (False, True):
            add((f"row_argmax {dt} min={is_min}", K.row_argmax_kernel(np.dtype(dt).str, is_min),
                 (arr(dt), arr(dt), arr("int64"), I, I)))
        add((f"cumsum {dt}", K.cumsum_kernel, (arr(dt), arr(dt), I, I, I, sc(dt))))
    for dt in FLOATS + ("int32", "int64", "bool"):
        add((f"argsort_rank {dt}", K.argsort_rank_kernel,
             (arr(dt), arr("int64"), I, I, I, B)))
    for is_min in (False, True):  # max/min of bool tensors
        add((f"row_argmax bool min={is_min}", K.row_argmax_kernel("|b1", is_min),
             (arr("bool"), arr("bool"), arr("int64"), I, I)))
    for dt in ("bool", "float16"):  # __setitem__ writes any dtype
        add((f"put {dt}", K.put_kernel, (arr(dt), arr("int64"), arr(dt), I)))
    for dt in FLOATS:
        add((f"softmax_rows {dt}", KN.softmax_rows_kernel(np.dtype(dt).str),
             (arr(dt), arr(dt), arr(dt), arr("int64"), I, I, I, I, sc(dt))))
        add((f"ce_backward {dt}", KN.cross_entropy_backward_kernel,
             (arr(dt), arr("int64"), arr(dt), arr(dt), I, arr(dt), I, I)))
        add((f"log_sigmoid {dt}", KN.log_sigmoid_kernel, (arr(dt), arr(dt), I)))
        add((f"im2col {dt}", KN.im2col_kernel, (arr(dt), arr(dt)) + (I,) * 13 + (sc(dt), I)))
        add((f"col2im {dt}", KN.col2im_kernel, (arr(dt), arr(dt)) + (I,) * 13 + (sc(dt), I)))
        add((f"max_pool {dt}", KN.max_pool_kernel,
             (arr(dt), arr(dt), arr("int64")) + (I,) * 12 + (I,)))
        add((f"max_pool_backward {dt}", KN.max_pool_backward_kernel,
             (arr(dt), arr("int64"), arr(dt), I, I, I)))
        add((f"avg_pool {dt}", KN.avg_pool_kernel,
             (arr(dt), arr(dt)) + (I,) * 12 + (sc(dt), I)))
        add((f"avg_pool_backward {dt}", KN.avg_pool_backward_kernel,
             (arr(dt), arr(dt)) + (I,) * 12 + (sc(dt), I)))
        s = sc(dt)
        add((f"sgd {dt}", OPT.sgd_kernel, (arr(dt),) * 3 + (s,) * 4 + (B, B, B, I)))
        add((f"adam {dt}", OPT.adam_kernel, (arr(dt),) * 4 + (s,) * 8 + (I,)))
        add((f"rmsprop {dt}", OPT.rmsprop_kernel, (arr(dt),) * 5 + (s,) * 8 + (B, B, I)))
        add((f"adagrad {dt}", OPT.adagrad_kernel, (arr(dt),) * 3 + (s,) * 3 + (I,)))
    for dt in FLOATS + ("int64",):
        for cfg in [(64, 64, 32, 4, 4, False), (64, 64, 32, 4, 4, True),
                    (32, 32, 16, 2, 2, False), (16, 16, 8, 4, 4, False)]:
            add((f"matmul {dt} {cfg}", MM.matmul_kernel(np.dtype(dt).str, *cfg),
                 (arr(dt), arr(dt), arr(dt), I, I, I, sc(dt))))
    return out


def main():
    from numba.cuda import compile_ptx, dispatcher

    from dlsys.backend.cuda import kernels as K
    from dlsys.backend.cuda import kernels_nn as KN
    from dlsys.backend.cuda import launch
    from dlsys.backend.cuda import matmul as MM
    from dlsys.backend.cuda import optim as OPT

    class _FakeDevice:  # NOTE: device functions compile for "the current device": pretend sm_80
        compute_capability = (8, 0)

    dispatcher.get_current_device = lambda: _FakeDevice()

    assert not launch.SIMULATOR, "run with NUMBA_ENABLE_CUDASIM=0"
    def _probe(x):
        x[0] = 1.0

    try:  # NOTE: a trivial compile finds out whether NVVM/NVRTC are installed at all
        compile_ptx(_probe, (arr("float32"),), cc=(8, 0))
    except Exception as e:
        print(f"NO_NVVM {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return
    failed = []
    # NOTE: ``--shard k/n``: every n-th case from the k-th (the test runs n of these at once)
    k, n = map(int, sys.argv[sys.argv.index("--shard") + 1].split("/")) \
        if "--shard" in sys.argv else (0, 1)
    every = cases(K, KN, MM, OPT)
    all_cases = every[k::n]
    for name, kern, sig in all_cases:
        try:
            compile_ptx(kern.py_func, sig, cc=(8, 0))
        except Exception as e:  # report every failure, not just the first
            failed.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    if failed:
        print("\n".join(failed))
        sys.exit(1)
    print(f"OK {len(all_cases)} of {len(every)}")


if __name__ == "__main__":
    main()
