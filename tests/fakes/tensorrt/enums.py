"""The enums and flags a TensorRT flavour has.

"Removed Python APIs and Replacements" (https://docs.nvidia.com/deeplearning/tensorrt/latest/api/
migration/tensorrt-10x-to-11x-python-api-reference.html): 11.x removed BuilderFlag FP16/INT8/BF16/FP8,
OBEY_PRECISION_CONSTRAINTS and the calibrators; NetworkDefinitionCreationFlag.STRONGLY_TYPED stays
(ignored). TensorRT-RTX (its Builder page) has the 11.x precision model plus ComputeCapability; the
members are those of tensorrt_rtx 1.7.1 less SM121.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from tests.fakes.tensorrt.state import Fake


def add_enums(fake: Fake) -> None:
    mod = fake.mod
    flag_names = ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "REFIT", "DEBUG"]
    if fake.weak:
        flag_names = ["FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS", *flag_names]
    mod.BuilderFlag = enum.IntEnum("BuilderFlag", flag_names, start=0)
    mod.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", ["STRONGLY_TYPED"], start=1
    )
    mod.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "TACTIC_DRAM"], start=0)
    mod.HardwareCompatibilityLevel = enum.IntEnum(
        "HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"], start=0
    )
    mod.TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    mod.DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32"], start=0)
    mod.float32, mod.float16 = mod.DataType.FLOAT, mod.DataType.HALF
    # IBuilderConfig.profiling_verbosity / EngineInspector (Python API pages "EngineInspector",
    # "ProfilingVerbosity"): the default LAYER_NAMES_ONLY gives names only, DETAILED layer parameters.
    mod.ProfilingVerbosity = enum.IntEnum(
        "ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"], start=0
    )
    mod.LayerInformationFormat = enum.IntEnum("LayerInformationFormat", ["ONELINE", "JSON"], start=0)
    if fake.rtx:
        mod.ComputeCapability = enum.IntEnum(
            "ComputeCapability", ["NONE", "CURRENT", "SM75", "SM80", "SM86", "SM89", "SM120"], start=0
        )

    def nptype(trt_type: Any) -> type:
        # tensorrt.nptype (DataType page): the numpy equivalent of a DataType
        return {
            mod.DataType.FLOAT: np.float32,
            mod.DataType.HALF: np.float16,
            mod.DataType.INT8: np.int8,
            mod.DataType.INT32: np.int32,
        }[trt_type]

    mod.nptype = nptype
