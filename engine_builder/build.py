"""ONNX -> serialized TensorRT / TensorRT-RTX engine + manifest (`drq build`).

What `build_engine` asks TensorRT to do, in order (Python API pages of TensorRT 10.x/11.x):

1. `Builder(logger)`, `create_network(flags)`: strongly typed on TensorRT 11 / RTX (always), and on 10.x
   unless FP16/INT8 builder flags are wanted (weak typing is what those flags act on; onnxruntime's
   TensorRT EP makes the same choice, microsoft/onnxruntime#24298).
2. `OnnxParser(network, logger).parse(bytes, path)`; every parser error is collected into one line.
   Models holding dual-region plugin nodes have their ONNX local functions stripped first when
   plugins are registered, so the parser must use the plugin (`plugins.onnx_function.strip_functions`).
3. `create_builder_config()`; one optimization profile `set_shape(input, min, opt, max)`;
   `set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)`; `builder_optimization_level` (0-5);
   `create_timing_cache(bytes)` + `set_timing_cache(cache, ignore_mismatch=False)` and, after the build,
   `get_timing_cache().serialize()` written back so the next build reuses the tactic timings;
   `BuilderFlag.VERSION_COMPATIBLE`; `hardware_compatibility_level = AMPERE_PLUS`;
   10.x only: `BuilderFlag.FP16`, `BuilderFlag.INT8` + `int8_calibrator` + `set_calibration_profile`;
   RTX only: `num_compute_capabilities` + `set_compute_capability`.
   `profiling_verbosity = ProfilingVerbosity.DETAILED` (so the engine inspector reports layer details).
4. the device query (the CUDA binding, full TensorRT), before the build, so a missing binding costs nothing;
   `build_serialized_network(network, config)`; None means failure: the logger's last error is reported.
5. engine bytes and `MODEL.plan.json` written atomically; `MODEL.plan.layers.json` (the engine
   inspector's JSON, `engine_layers`) when this machine's runtime can deserialize the engine.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx

from drq.artifacts import atomic_write_bytes, atomic_write_text, sha256_file
from drq.errors import ManifestError
from drq.manifest import Manifest, Profile, manifest_path, save_manifest
from engine_builder.backends.base import EngineBackend, Flavour, require
from engine_builder.errors import BuildError

Shape = tuple[int, ...]
PluginHook = Callable[[], object] | Literal["drq"] | None
PLUGIN_DOMAIN = "drq"
LOWERING_KEY = "drq.lowering"  # written by engine_builder.lowerings (graph.LOWERING_KEY)
RECIPE_SHA_KEY = "drq.recipe_sha256"
MIB = 1 << 20
MAX_PARSER_ERRORS = 3  # one line stays readable; TensorRT reports one error per failing node


MAX_WORKSPACE_MIB = 1 << 20
"""1 TiB: above any GPU's memory; the bindings take the pool size as a uint64 of bytes and raise a
TypeError for more."""
MAX_VOLUME = 2**31 - 1
"""TensorRT indexes tensor elements with int32: a tensor of more elements fails or is mis-indexed
(NVIDIA/TensorRT#3815, "tensor number < 2^31-1"; TensorRT-RTX 1.7 only warns at build time)."""


def check_volume(what: str, shape: Shape) -> None:
    """Refuse a profile shape with more than `MAX_VOLUME` elements.

    Raises:
        BuildError: `--max 1x3x100000x100000: 30000000000 elements, over TensorRT's 2^31-1 per tensor`.
    """
    volume = math.prod(shape)
    if volume > MAX_VOLUME:
        raise BuildError(
            f"{what} {'x'.join(map(str, shape))}: {volume} elements, over TensorRT's 2^31-1 per tensor; "
            "give a smaller --max (or tile the image)"
        )


def parse_shape(text: str, what: str = "shape") -> Shape:
    """ "1x3x64x64" -> (1, 3, 64, 64).

    Raises:
        BuildError: not positive integers separated by "x".
    """
    try:
        dims = tuple(int(part) for part in str(text).lower().split("x"))
    except ValueError as err:
        raise BuildError(
            f"{what} {text!r}: expected positive integers joined by 'x', e.g. 1x3x256x256"
        ) from err
    if not dims or any(d < 1 for d in dims):
        raise BuildError(f"{what} {text!r}: expected positive integers joined by 'x', e.g. 1x3x256x256")
    return dims


@dataclass(frozen=True)
class BuildConfig:
    """Everything one engine build needs.

    Attributes:
        onnx: the ONNX model (from `drq export`).
        output: engine path (`MODEL.plan`); the manifest goes beside it as `MODEL.plan.json`.
        backend: "tensorrt" (10.x / 11.x) or "tensorrt_rtx".
        min_shape / opt_shape / max_shape: the input's optimization profile (NCHW).
        workspace_mib: workspace memory pool limit (None: TensorRT's default, the device memory).
        optimization_level: builder_optimization_level 0-5 (None: TensorRT's default, 3).
        timing_cache: file to load tactic timings from (if present) and save them back to.
        version_compatible: BuilderFlag.VERSION_COMPATIBLE (engine runs on later TensorRT releases).
        hardware_compatible: HardwareCompatibilityLevel.AMPERE_PLUS (any Ampere or later GPU).
        fp16 / int8: TensorRT <= 10.x weak-typing flags.
        calib_cache: calibration cache served by the INT8 calibrator (TensorRT <= 10.x, implies int8).
        plugins: registration hook run before parsing: a callable, or "drq" for
            `plugins.trt_registration.register_dual_region_plugins()`.
        compute_capabilities: TensorRT-RTX targets, e.g. ("8.6", "12.0"); empty: RTX's portable default.
    """

    onnx: Path
    output: Path
    backend: Flavour = "tensorrt"
    min_shape: Shape | None = None
    opt_shape: Shape | None = None
    max_shape: Shape | None = None
    workspace_mib: int | None = None
    optimization_level: int | None = None
    timing_cache: Path | None = None
    version_compatible: bool = False
    hardware_compatible: bool = False
    fp16: bool = False
    int8: bool = False
    calib_cache: Path | None = None
    plugins: PluginHook = None
    compute_capabilities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "onnx", Path(self.onnx))
        object.__setattr__(self, "output", Path(self.output))
        shapes = (self.min_shape, self.opt_shape, self.max_shape)
        given = [s is not None for s in shapes]
        if any(given) and not all(given):
            raise BuildError("--min/--opt/--max: give all three shapes or none")
        if all(given):
            try:
                Profile(*shapes)  # type: ignore[arg-type]
            except ManifestError as err:
                raise BuildError(f"--min/--opt/--max: {err}") from err
            check_volume("--max", self.max_shape)  # type: ignore[arg-type]
        if self.workspace_mib is not None and not 1 <= self.workspace_mib <= MAX_WORKSPACE_MIB:
            raise BuildError(
                f"--workspace-mib: must be 1..{MAX_WORKSPACE_MIB} (1 TiB), got {self.workspace_mib}"
            )
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise BuildError(f"--opt-level: must be in 0..5, got {self.optimization_level}")
        if self.plugins is not None and self.plugins != "drq" and not callable(self.plugins):
            raise BuildError(f"--plugins: must be 'drq' or a callable, got {self.plugins!r}")
        if self.plugins == "drq" and self.hardware_compatible:
            # The AOT plugin embeds PTX compiled for the building GPU (plugins.aot): sm_90a / sm_100a /
            # sm_120a PTX runs on that architecture only and sm_86 PTX not on sm_80, so the engine could
            # not run on every GPU AMPERE_PLUS promises.
            raise BuildError(
                "--plugins drq: cannot be --hardware-compatible; the embedded plugin PTX "
                "is compiled for the building GPU's architecture"
            )
        if self.output.resolve() == self.onnx.resolve():
            raise BuildError(f"{self.output}: is the input model; choose another output path")

    @property
    def uses_int8_calibration(self) -> bool:
        return self.int8 or self.calib_cache is not None


@dataclass(frozen=True)
class BuildResult:
    engine: Path
    manifest_file: Path
    manifest: Manifest
    timing_cache_saved: bool
    warnings: tuple[str, ...] = field(default=())
    layers_note: str = ""  # why no MODEL.plan.layers.json was written ("" when it was)


def _has_plugin_nodes(model: onnx.ModelProto) -> bool:
    return any(node.domain == PLUGIN_DOMAIN for node in model.graph.node)


def _register_plugins(hook: PluginHook, backend: EngineBackend) -> tuple[str, ...]:
    if hook is None:
        return ()
    if hook == "drq":
        require(
            backend.flavour == "tensorrt",
            "--plugins drq (TensorRT Python plugins)",
            backend.flavour,
            backend.version,
            ">= 10.6 (full TensorRT)",
        )
        from plugins.trt_registration import register_dual_region_plugins

        return tuple(register_dual_region_plugins().plugin_ids)
    hook()  # type: ignore[operator]
    return (getattr(hook, "__name__", "custom"),)


def _make_logger(trt: Any) -> Any:
    """A trt.ILogger subclass that keeps warnings and errors, so a failed build can say why in one line."""
    base = trt.ILogger
    severity = trt.ILogger.Severity

    class CollectingLogger(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(str(msg).strip())
            elif level == severity.WARNING:
                self.warnings.append(str(msg).strip())

    return CollectingLogger()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _parse(trt: Any, network: Any, logger: Any, data: bytes, path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    # parse(model, path): the path lets the parser find external weight files next to the model.
    if not parser.parse(data, str(path)):
        errors = [_one_line(str(parser.get_error(i))) for i in range(parser.num_errors)]
        detail = (
            "; ".join(errors[:MAX_PARSER_ERRORS])
            if errors
            else (logger.errors[-1] if logger.errors else "no detail")
        )
        if len(errors) > MAX_PARSER_ERRORS:
            detail += f"; ({len(errors) - MAX_PARSER_ERRORS} more)"
        raise BuildError(f"{path}: TensorRT's ONNX parser rejected the model: {detail}")


def _load_onnx(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError as err:
        raise BuildError(f"{path}: no such ONNX file") from err
    except Exception as err:  # onnx raises DecodeError / OSError variants for non-ONNX bytes
        raise BuildError(f"{path}: not a readable ONNX model ({err.__class__.__name__})") from err
    if not model.graph.node and not model.graph.input:
        # An empty file (or any bytes protobuf reads as an empty message) parses as a model without a
        # graph; TensorRT would report "found 0 inputs".
        what = "empty file" if path.stat().st_size == 0 else "no graph"
        raise BuildError(f"{path}: {what}, not an ONNX model (drq export writes one)")
    return model


def _check_features(config: BuildConfig, backend: EngineBackend) -> None:
    """Check every requested feature before any work, so the error names the flag, not a TensorRT crash."""
    features, flavour, version = backend.features, backend.flavour, backend.version
    if config.fp16:
        require(features.weak_typing, "--fp16 (BuilderFlag.FP16)", flavour, version)
    if config.uses_int8_calibration:
        require(features.int8_flag, "INT8 weak typing (BuilderFlag.INT8)", flavour, version)
    if config.calib_cache is not None:
        require(features.calibrators, "--int8-calibrator (IInt8EntropyCalibrator2)", flavour, version)
    if config.version_compatible:
        require(features.version_compatible, "--version-compatible", flavour, version, ">= 8.6")
    if config.hardware_compatible:
        require(features.hardware_compatible, "--hardware-compatible", flavour, version, ">= 8.6")
    if config.optimization_level is not None:
        require(features.optimization_level, "--opt-level", flavour, version, ">= 8.6")
    if config.timing_cache is not None:
        require(features.timing_cache, "--timing-cache", flavour, version, ">= 8.0")


def _model_bytes(config: BuildConfig, model: onnx.ModelProto, plugin_ids: tuple[str, ...]) -> bytes:
    """What the parser reads: the file, or the model without plugin function bodies when plugins are
    registered (so the parser must use the plugin)."""
    if _has_plugin_nodes(model) and plugin_ids:
        from plugins.onnx_function import strip_functions

        return strip_functions(model).SerializeToString()
    return config.onnx.read_bytes()


def _profile_shapes(config: BuildConfig, network: Any) -> tuple[str, tuple[Shape, Shape, Shape]]:
    """The input's name and its (min, opt, max) shapes: as given, or the static input shape.

    Raises:
        BuildError: not one input, a dynamic input without shapes, or shapes that do not fit it.
    """
    if network.num_inputs != 1:
        raise BuildError(f"{config.onnx}: expected one input (the LR image), found {network.num_inputs}")
    tensor = network.get_input(0)
    input_name = str(tensor.name)
    input_shape = tuple(int(d) for d in tensor.shape)
    if config.min_shape is not None:
        shapes = (config.min_shape, config.opt_shape, config.max_shape)
    elif all(d > 0 for d in input_shape):
        shapes = (input_shape,) * 3
    else:
        raise BuildError(
            f"{config.onnx}: input {input_name!r} has dynamic shape {list(input_shape)}; "
            "give --min/--opt/--max"
        )
    for shape in shapes:
        assert shape is not None
        if len(shape) != len(input_shape) or any(
            d > 0 and d != s for d, s in zip(input_shape, shape, strict=True)
        ):
            raise BuildError(
                f"--min/--opt/--max {'x'.join(map(str, shape))}: does not fit input {input_name!r} "
                f"of shape {list(input_shape)} (-1 = dynamic)"
            )
    return input_name, shapes  # type: ignore[return-value]


def _set_timing_cache(build_config: Any, config: BuildConfig) -> Any:
    """Load the timing cache into the config (None without --timing-cache).

    Raises:
        BuildError: TensorRT refused the cache (another GPU or version).
    """
    if config.timing_cache is None:
        return None
    previous = config.timing_cache.read_bytes() if config.timing_cache.is_file() else b""
    timing_cache = build_config.create_timing_cache(previous)
    # ignore_mismatch=False: a cache from another GPU is refused rather than silently misused
    # (ITimingCache docs: combining caches of different devices "may lead to functional/performance bugs").
    if not build_config.set_timing_cache(timing_cache, False):
        raise BuildError(
            f"{config.timing_cache}: TensorRT refused the timing cache (another TensorRT "
            "version or GPU); delete it to start a new one"
        )
    return timing_cache


def _set_options(trt: Any, build_config: Any, config: BuildConfig) -> None:
    """Memory, optimization level, compatibility, FP16 and profiling verbosity."""
    if config.workspace_mib is not None:
        build_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_mib) * MIB)
    if config.optimization_level is not None:
        build_config.builder_optimization_level = int(config.optimization_level)
    if config.version_compatible:
        build_config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if config.hardware_compatible:
        build_config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if config.fp16:
        build_config.set_flag(trt.BuilderFlag.FP16)
    if hasattr(trt, "ProfilingVerbosity"):
        # DETAILED: the engine inspector reports layer parameters, precisions and tactics, not only
        # names (EngineInspector page of the 10.x/11.x Python API; default LAYER_NAMES_ONLY).
        build_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED


def _set_int8_calibration(trt: Any, build_config: Any, profile: Any, config: BuildConfig, shapes) -> None:
    """BuilderFlag.INT8 and, with a cache, the calibrator serving it (TensorRT <= 10.x).

    Raises:
        BuildError: TensorRT refused the calibration profile.
    """
    if not config.uses_int8_calibration:
        return
    build_config.set_flag(trt.BuilderFlag.INT8)
    if config.calib_cache is None:
        return
    from engine_builder.calib_cache import read_cache
    from engine_builder.calibrator import make_calibrator

    build_config.int8_calibrator = make_calibrator(trt, read_cache(config.calib_cache))
    # "Calibration optimization profile must be set if int8 calibration is used to set scales for a
    # network with runtime dimensions" (IBuilderConfig.set_calibration_profile, 10.x Python API; MIN/MAX
    # are replaced by OPT; deprecated in 10.1, removed in 11 with the calibrators). Our input is dynamic,
    # so give it the build's profile.
    if not build_config.set_calibration_profile(profile):
        raise BuildError(
            f"{config.onnx}: TensorRT refused the calibration profile ({Profile(*shapes).describe()})"
        )


def _serialize(
    builder: Any, network: Any, build_config: Any, logger: Any, config: BuildConfig, version
) -> bytes:
    """build_serialized_network; None means failure, reported with the logger's last error.

    Raises:
        BuildError: TensorRT built no engine.
    """
    serialized = builder.build_serialized_network(network, build_config)
    if serialized is None:
        why = logger.errors[-1] if logger.errors else "no error was logged"
        raise BuildError(f"{config.onnx}: TensorRT {version} built no engine: {_one_line(why)}")
    return bytes(memoryview(serialized))


def engine_layers(trt: Any, engine_bytes: bytes, input_name: str, opt_shape: Shape) -> tuple[str | None, str]:
    """The engine inspector's JSON layer information, or None and why it is unavailable.

    The engine must be deserialized for `create_engine_inspector()`; an execution context with the input
    shape set lets the inspector show concrete dimensions and tensor formats ("Otherwise, values dependent
    on input shapes will be displayed as -1 and format information will not be shown", IEngineInspector,
    TensorRT-RTX C++ API). A TensorRT-RTX engine built on a machine without a GPU cannot be deserialized
    there (measured, 1.7.1: "cudaError 35: CUDA driver version is insufficient"): then None.
    """
    logger = _make_logger(trt)
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    if engine is None:
        return None, _one_line(
            logger.errors[-1] if logger.errors else "the runtime could not load the engine"
        )
    inspector = engine.create_engine_inspector()
    context = engine.create_execution_context()
    if context is not None and context.set_input_shape(input_name, opt_shape):
        inspector.execution_context = context
    info = str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    del inspector, context, engine  # TensorRT objects go before the runtime's CUDA context
    return info, ""


@dataclass
class _Session:
    """One build's TensorRT objects and what the manifest needs from them."""

    builder: Any
    network: Any
    build_config: Any
    logger: Any
    input_name: str
    shapes: tuple[Shape, Shape, Shape]
    strongly_typed: bool
    timing_cache: Any


def _configure(trt: Any, backend: EngineBackend, config: BuildConfig, data: bytes) -> _Session:
    """Network (parsed), builder config and profile, every option set: all up to the build itself."""
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    strongly_typed = backend.features.always_strongly_typed or not (
        config.fp16 or config.uses_int8_calibration
    )
    network = backend.create_network(builder, strongly_typed)
    _parse(trt, network, logger, data, config.onnx)
    input_name, shapes = _profile_shapes(config, network)
    build_config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    build_config.add_optimization_profile(profile)
    _set_options(trt, build_config, config)
    timing_cache = _set_timing_cache(build_config, config)
    _set_int8_calibration(trt, build_config, profile, config, shapes)
    backend.configure_target(build_config, tuple(config.compute_capabilities))
    return _Session(builder, network, build_config, logger, input_name, shapes, strongly_typed, timing_cache)


def _manifest(
    config: BuildConfig, backend: EngineBackend, session: _Session, engine_bytes: bytes, extra: dict[str, Any]
) -> Manifest:
    return Manifest(
        engine_sha256=hashlib.sha256(engine_bytes).hexdigest(),
        onnx=str(config.onnx),
        onnx_sha256=sha256_file(config.onnx),
        flavour=backend.flavour,
        tensorrt_version=backend.version,
        input_name=session.input_name,
        profile=Profile(*session.shapes),
        strongly_typed=session.strongly_typed,
        fp16=config.fp16,
        int8=config.uses_int8_calibration,
        version_compatible=config.version_compatible,
        hardware_compatible=config.hardware_compatible,
        **extra,
    )


def _save_timing_cache(session: _Session, config: BuildConfig) -> bool:
    if session.timing_cache is None or config.timing_cache is None:
        return False
    cache = session.build_config.get_timing_cache().serialize()
    atomic_write_bytes(config.timing_cache, bytes(memoryview(cache)))
    return True


def build_engine(config: BuildConfig, backend: EngineBackend | None = None) -> BuildResult:
    """Build and write `config.output`, its manifest and (when the runtime can load it here) the engine
    inspector's layer information `MODEL.plan.layers.json`.

    Args:
        config: what to build.
        backend: the TensorRT flavour to use (default: `get_backend(config.backend)`; tests pass stand-ins).

    Returns:
        Paths, the manifest, and whether a timing cache was written.

    Raises:
        MissingDependency: TensorRT (or TensorRT-RTX, or the CUDA binding full TensorRT needs for the
            device query) is not installed; found before the build starts.
        FeatureUnavailable: a flag the installed TensorRT lacks ("... needs TensorRT <= 10.x; found 11.4").
        BuildError: unreadable ONNX, parser errors (one line), or TensorRT produced no engine.
    """
    if backend is None:
        from engine_builder.backends.trt import get_backend

        backend = get_backend(config.backend)
    trt = backend.trt
    model = _load_onnx(config.onnx)
    meta = {p.key: p.value for p in model.metadata_props}
    _check_features(config, backend)
    plugin_ids = _register_plugins(config.plugins, backend)
    data = _model_bytes(config, model, plugin_ids)
    started = time.perf_counter()
    session = _configure(trt, backend, config, data)
    # The device goes into the manifest; asking for it now means a missing CUDA binding fails before
    # the build instead of throwing a finished engine away.
    device, capability = backend.device()
    engine_bytes = _serialize(
        session.builder, session.network, session.build_config, session.logger, config, backend.version
    )
    extra = {
        "device": device,
        "compute_capability": capability,
        "build_seconds": round(time.perf_counter() - started, 3),
        "lowering": meta.get(LOWERING_KEY, ""),
        "recipe_sha256": meta.get(RECIPE_SHA_KEY, ""),
        "plugins": plugin_ids,
    }
    saved = _save_timing_cache(session, config)
    manifest = _manifest(config, backend, session, engine_bytes, extra)
    atomic_write_bytes(config.output, engine_bytes)
    manifest_file = save_manifest(manifest, manifest_path(config.output))
    layers, why = engine_layers(trt, engine_bytes, session.input_name, session.shapes[1])
    note = ""
    if layers is not None:
        atomic_write_text(layers_path(config.output), layers)
    else:
        note = f"engine inspector unavailable on this machine ({why}); drq inspect reads the ONNX"
    return BuildResult(config.output, manifest_file, manifest, saved, tuple(session.logger.warnings), note)


def layers_path(engine: Path) -> Path:
    """`MODEL.plan.layers.json`: the engine inspector's JSON, written beside the engine at build time."""
    return engine.with_name(engine.name + ".layers.json")
