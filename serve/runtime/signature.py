"""What an SR model must look like before a runner feeds it images: one NCHW RGB input, one NCHW RGB
output, and an output `scale` times the input's height and width.

Checked when a model is opened (rank and channels from the model's declared signature, so a wrong model
is one line instead of an onnxruntime traceback on the first image) and after each run (the spatial
factor, which a dynamic-shape signature cannot state).
"""

from __future__ import annotations

from collections.abc import Sequence

from serve.errors import RunnerError

Dim = int | str | None  # onnxruntime reports a dynamic dimension as its name (str) or None


def _describe(shape: Sequence[Dim]) -> str:
    return "x".join(str(d) if isinstance(d, int) else "?" for d in shape)


def check_image_signature(source: str, role: str, shape: Sequence[Dim]) -> None:
    """Refuse a model input or output that is not a batch of 3-channel images (NCHW).

    Raises:
        RunnerError: `<source>: input 'lr' has shape 1x1x?x? (rank 4, 1 channels); drq feeds NCHW RGB
            images (N x 3 x H x W)`.
    """
    channels = shape[1] if len(shape) == 4 else None
    if len(shape) != 4 or (isinstance(channels, int) and channels != 3):
        got = f"rank {len(shape)}" + (f", {channels} channels" if isinstance(channels, int) else "")
        raise RunnerError(
            f"{source}: {role} has shape {_describe(shape) or 'scalar'} ({got}); drq runs SR models on "
            "NCHW RGB images (N x 3 x H x W)"
        )


def check_upscaled(source: str, lr_shape: Sequence[int], sr_shape: Sequence[int], scale: int) -> None:
    """Refuse an output that is not `scale` times the input (N and C equal, H and W times `scale`).

    Raises:
        RunnerError: `<source>: gave 1x3x64x64 for 1x3x32x32, not x4`.
    """
    expected = (lr_shape[0], lr_shape[1], lr_shape[2] * scale, lr_shape[3] * scale)
    if tuple(sr_shape) != expected:
        raise RunnerError(
            f"{source}: gave {_describe(sr_shape)} for {_describe(lr_shape)}, not x{scale} "
            f"({_describe(expected)}); is this the model for this scale?"
        )
