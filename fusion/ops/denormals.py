"""Flush-to-zero for numba kernels: read and set the x86 MXCSR register from jitted code.

Denormal floats (|x| < 1.2e-38) cost x86 cores a microcode assist of ~100 cycles per operation. The
selective scan's states decay towards them over dark image regions (long runs of u = 0), which made a CPU
training step on real crops ~1.4x slower than on noise. A kernel calls ``enter_flush_to_zero()`` at the
start of each parallel work item and ``restore_float_mode(saved)`` at its end, so the mode never leaks
into torch's ops that later run on the same OpenMP threads. Values below 1.2e-38 then become 0: far
below anything that changes an output. Other CPUs: no-ops (the kernels are then exact IEEE, only slower).
Imports numba and llvmlite only.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

_X86 = platform.machine().lower() in {"x86_64", "amd64"}
_FTZ_DAZ = 0x8040  # MXCSR bits 15 (flush results to zero) and 6 (treat denormal inputs as zero)


def _mxcsr_instruction(builder, name: str, pointer) -> None:
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    builder.call(
        cgutils.get_or_insert_function(builder.module, fnty, name),
        [builder.bitcast(pointer, ir.IntType(8).as_pointer())],
    )


@intrinsic
def enter_flush_to_zero(typingctx):
    """Set FTZ and DAZ on this thread; returns the previous mode for ``restore_float_mode``."""

    def codegen(context, builder, signature, args):
        if not _X86:
            return ir.Constant(ir.IntType(32), 0)
        saved = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_instruction(builder, "llvm.x86.sse.stmxcsr", saved)
        previous = builder.load(saved)
        _mxcsr_instruction(
            builder,
            "llvm.x86.sse.ldmxcsr",
            cgutils.alloca_once_value(builder, builder.or_(previous, ir.Constant(ir.IntType(32), _FTZ_DAZ))),
        )
        return previous

    return types.uint32(), codegen


@intrinsic
def restore_float_mode(typingctx, saved):
    """Put back the mode ``enter_flush_to_zero`` returned."""

    def codegen(context, builder, signature, args):
        if _X86:
            _mxcsr_instruction(builder, "llvm.x86.sse.ldmxcsr", cgutils.alloca_once_value(builder, args[0]))
        return context.get_dummy_value()

    return types.void(types.uint32), codegen
