"""Eight-lane float32 vectors for the denoiser's kernels: LLVM ``<8 x float>`` values in numba.

The matrix kernels of :mod:`debleed.models.streaming` keep their accumulators in vector registers
and sum every output element in one fixed order (``acc = fma(w_i, x_i, acc)`` for ``i`` rising),
whatever the number of frames a call batches. LLVM's loop vectoriser cannot be told to do that:
with reassociation allowed it picks its own lane count and partial sums per loop, so two loops
that compute the same element can round differently. These few operations let a kernel say
exactly what it computes, with plain loops around them.

Every function here is a numba ``intrinsic``: callable only from jitted code, inlined, with no
call, allocation, bounds check or negative-index wrap-around (the caller keeps its indices in
range). ``fma`` is LLVM's ``fmuladd``: fused on a machine with FMA, multiply-then-add without, the
same in the vector and the scalar form (so a scalar remainder rounds as a vector lane does).
Eight lanes are one AVX register (two SSE registers, half an AVX-512 one): a kernel that keeps
at most twelve of them live fits the sixteen registers of AVX2 without spilling.

numba's on-disk cache keys a cached function on its own source file only: after changing this
module, touch the modules whose cached kernels use it (or clear their ``__pycache__``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

#: Lanes of a :data:`f32x8` vector.
LANES = 8
_F32 = ir.FloatType()
_VT = ir.VectorType(_F32, LANES)


class F32x8(types.Type):
    """numba type of an eight-lane float32 vector (an LLVM ``<8 x float>`` value)."""

    def __init__(self):
        super().__init__(name="f32x8")


f32x8 = F32x8()


@register_model(F32x8)
class _F32x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VT)


def _is_f32_vector_array(arr) -> bool:
    """A contiguous 1-D float32 array (the only kind these operations index)."""
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.float32 and arr.layout == "C"


def _elem_ptr(context, builder, aryty, ary, idxty, idx):
    """Pointer to ``ary[idx]`` (no bounds check, no wrap-around)."""
    a = context.make_array(aryty)(context, builder, ary)
    i = context.cast(builder, idx, idxty, types.intp)
    return builder.gep(a.data, [i])


def _splat(builder, v):
    """The scalar ``v`` in every lane."""
    one = builder.insert_element(ir.Constant(_VT, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), LANES), None)
    return builder.shuffle_vector(one, ir.Constant(_VT, ir.Undefined), zeros)


def _fmuladd(builder, ty):
    """LLVM's ``fmuladd`` for a float32 scalar or vector type."""
    name = "llvm.fmuladd." + ("v%df32" % ty.count if isinstance(ty, ir.VectorType) else "f32")
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty, ty]), name)


@intrinsic
def vzero(typingctx):
    """All lanes 0.0."""
    def codegen(context, builder, sig, args):
        return ir.Constant(_VT, None)
    return f32x8(), codegen


@intrinsic
def vload(typingctx, arr, i):
    """``arr[i:i + 8]`` of a 1-D float32 array (unaligned load)."""
    if not (_is_f32_vector_array(arr) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load(builder.bitcast(p, _VT.as_pointer()), align=4)
    return f32x8(arr, i), codegen


@intrinsic
def vstore(typingctx, arr, i, v):
    """``arr[i:i + 8] = v``."""
    if not (_is_f32_vector_array(arr) and isinstance(i, types.Integer) and v == f32x8):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        builder.store(args[2], builder.bitcast(p, _VT.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.none(arr, i, v), codegen


@intrinsic
def vbroadcast(typingctx, arr, i):
    """Every lane ``arr[i]`` (a 1-D float32 array)."""
    if not (_is_f32_vector_array(arr) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        v = builder.load(_elem_ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1]), align=4)
        return _splat(builder, v)
    return f32x8(arr, i), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane by lane (fused where the machine has FMA)."""
    if not (a == f32x8 and b == f32x8 and c == f32x8):
        return None

    def codegen(context, builder, sig, args):
        return builder.call(_fmuladd(builder, _VT), args)
    return f32x8(a, b, c), codegen


def _binary(name, doc, op):
    """An intrinsic ``name(a, b)`` of two :data:`f32x8` vectors, ``op(builder, a, b)``."""
    def typer(typingctx, a, b):
        if not (a == f32x8 and b == f32x8):
            return None

        def codegen(context, builder, sig, args):
            return op(builder, args[0], args[1])
        return f32x8(a, b), codegen
    typer.__name__ = typer.__qualname__ = name
    typer.__doc__ = doc
    return intrinsic(typer)


vadd = _binary("vadd", "``a + b`` lane by lane.", lambda b, x, y: b.fadd(x, y))
vsub = _binary("vsub", "``a - b`` lane by lane.", lambda b, x, y: b.fsub(x, y))
vmul = _binary("vmul", "``a * b`` lane by lane.", lambda b, x, y: b.fmul(x, y))
vdiv = _binary("vdiv", "``a / b`` lane by lane (IEEE division).", lambda b, x, y: b.fdiv(x, y))
vmax = _binary("vmax", "``b`` where ``a < b``, else ``a``, lane by lane (a NaN in ``a`` stays).",
               lambda b, x, y: b.select(b.fcmp_ordered("<", x, y), y, x))
vmin = _binary("vmin", "``b`` where ``a > b``, else ``a``, lane by lane (a NaN in ``a`` stays).",
               lambda b, x, y: b.select(b.fcmp_ordered(">", x, y), y, x))


@intrinsic
def vsplat(typingctx, v):
    """Every lane the float32 scalar ``v``."""
    if v != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return _splat(builder, args[0])
    return f32x8(v), codegen


@intrinsic
def vselect_lt(typingctx, a, b, c, d):
    """``c`` where ``a < b``, else ``d``, lane by lane (a NaN in ``a`` or ``b`` picks ``d``)."""
    if not (a == f32x8 and b == f32x8 and c == f32x8 and d == f32x8):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered("<", args[0], args[1]), args[2], args[3])
    return f32x8(a, b, c, d), codegen


@intrinsic
def vsplitexp(typingctx, v):
    """``(m, e)`` with ``v = m 2^e``, ``m`` in ``[sqrt(1/2), sqrt(2))`` and ``e`` a whole number
    (as float32), lane by lane, for positive normal finite ``v`` (what a logarithm needs; other
    lanes give meaningless values: the caller masks them)."""
    if v != f32x8:
        return None

    def codegen(context, builder, sig, args):
        iv = ir.VectorType(ir.IntType(32), LANES)

        def ic(c):
            return ir.Constant(iv, [ir.Constant(ir.IntType(32), c)] * LANES)
        bits = builder.bitcast(args[0], iv)
        e = builder.sub(builder.and_(builder.lshr(bits, ic(23)), ic(0xFF)), ic(126))
        m = builder.bitcast(builder.or_(builder.and_(bits, ic(0x807FFFFF)), ic(0x3F000000)), _VT)  # [0.5, 1)
        low = builder.fcmp_ordered("<", m, ir.Constant(_VT, [ir.Constant(_F32, 0.7071067811865476)] * LANES))
        m = builder.select(low, builder.fadd(m, m), m)
        e = builder.select(low, builder.sub(e, ic(1)), e)
        ef = builder.sitofp(e, _VT)
        return context.make_tuple(builder, sig.return_type, (m, ef))
    return types.UniTuple(f32x8, 2)(v), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` of three float32 scalars, rounded as one lane of :func:`vfma`."""
    if not (a == types.float32 and b == types.float32 and c == types.float32):
        return None

    def codegen(context, builder, sig, args):
        return builder.call(_fmuladd(builder, _F32), args)
    return types.float32(a, b, c), codegen


@intrinsic
def load(typingctx, arr, i):
    """``arr[i]`` of a 1-D float32 array without the negative-index check."""
    if not (_is_f32_vector_array(arr) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_elem_ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1]), align=4)
    return types.float32(arr, i), codegen


__all__ = ["LANES", "f32x8", "vzero", "vload", "vstore", "vbroadcast", "vsplat", "vfma", "vadd", "vsub", "vmul", "vdiv",
           "vmax", "vmin", "vselect_lt", "vsplitexp", "fma", "load"]
