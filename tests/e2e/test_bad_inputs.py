"""Bad input to every command, as a new user types it: one stderr line, exit 2, no traceback, every
input file unchanged, and no output (partial or whole) left behind.

Read-only folders: the suite runs as root in CI, where chmod 555 does not stop a write, so "not
writable" is simulated by making os.access deny the folder (what it reports for a read-only folder
or file system to a normal user); an output under a regular file and an output that is a folder are
real.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from drq.cli import main

pytestmark = pytest.mark.shared_data
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
W4 = SHARED / "sr_weights" / "imdn_x4.pth"
CALIB = SHARED / "sr_calib" / "bsd200"
SET5 = SHARED / "sr_bench" / "Set5" / "x4"


def _identity(path: Path, shape: list, scale: int) -> None:
    x = helper.make_tensor_value_info("lr", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("sr", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["lr"], ["sr"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"drq.scale": str(scale)})
    onnx.save(model, str(path))


def _recipe_variant(src: Path, dst: Path, edit) -> None:
    data = json.loads(src.read_text())
    data = copy.deepcopy(data)
    edit(data, next(iter(data["layers"])))
    dst.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Good and bad input files; built once (a W8A8 recipe of 2 images and the FP32 export)."""
    d = tmp_path_factory.mktemp("inputs")
    assert (
        main(["export", "--arch", "imdn", "--weights", str(W4), "--scale", "4", "-o", str(d / "fp.onnx")])
        == 0
    )
    quantize = ["quantize", "--arch", "imdn", "--weights", str(W4), "--scale", "4", "--calib", str(CALIB)]
    common = ["--images", "2", "--threads", "1", "--quiet"]
    assert (
        main(
            [
                *quantize,
                "-o",
                str(d / "u8.json"),
                "--method",
                "minmax",
                "--w-bits",
                "8",
                "--a-bits",
                "8",
                *common,
            ]
        )
        == 0
    )
    assert main([*quantize, "-o", str(d / "split.json"), "--method", "drq", *common]) == 0
    (d / "bad.png").write_bytes(b"not a png")
    (d / "empty.onnx").write_bytes(b"")
    (d / "empty.pth").write_bytes(b"")
    (d / "trunc.onnx").write_bytes((d / "fp.onnx").read_bytes()[:500])
    (d / "afile").write_text("a regular file")
    (d / "notrecipe.json").write_text('{"a": 1}')
    import torch

    torch.save([1, 2, 3], d / "list.pth")
    torch.save({"x": torch.zeros(2)}, d / "wrongkeys.pth")
    (d / "pickle.pth").write_bytes(pickle.dumps(Path("code, not weights")))
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(d / "gray.png")
    (d / "imgs").mkdir()
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8), "RGB").save(d / "imgs" / "a.png")
    (d / "imgs" / "z.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    _identity(d / "gray1.onnx", [1, 1, None, None], 4)
    _identity(d / "ident_x4.onnx", [1, 3, None, None], 4)
    x2 = onnx.load(str(d / "fp.onnx"))
    for p in x2.metadata_props:
        if p.key == "drq.scale":
            p.value = "2"
    onnx.save(x2, str(d / "says_x2.onnx"))

    def act(field, value):
        def edit(data, layer):
            data["layers"][layer]["act"][field] = value

        return edit

    _recipe_variant(d / "u8.json", d / "tinyscale.json", act("scale", 1e-45))
    _recipe_variant(d / "split.json", d / "hugeupper.json", act("upper", 1e38))

    def rename(data, layer):
        data["layers"]["nosuch.layer"] = data["layers"].pop(layer)

    _recipe_variant(d / "u8.json", d / "badlayer.json", rename)
    return d


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


Q = "quantize --arch imdn --weights {W4} --scale 4 --calib {CALIB} -o {out}/r.json --images 2 --quiet"
CASES: list[tuple[str, str, str]] = [
    # (id, command line, expected fragment of the one stderr line)
    ("quantize-empty-pth", Q.replace("{W4}", "{in}/empty.pth"), "empty file, not a torch checkpoint"),
    ("quantize-list-pth", Q.replace("{W4}", "{in}/list.pth"), "not a state_dict (found list)"),
    ("quantize-pickle-pth", Q.replace("{W4}", "{in}/pickle.pth"), "pickles Python objects"),
    ("quantize-png-as-pth", Q.replace("{W4}", "{in}/bad.png"), "neither a torch.save zip archive nor"),
    ("quantize-wrong-keys", Q.replace("{W4}", "{in}/wrongkeys.pth"), "not a checkpoint of imdn x4"),
    ("quantize-wrong-scale", Q.replace("--scale 4", "--scale 3"), "not a checkpoint of imdn x3"),
    ("quantize-out-under-file", Q.replace("{out}/r.json", "{in}/afile/r.json"), "afile is a file, not a"),
    ("quantize-out-is-folder", Q.replace("{out}/r.json", "{in}"), "is a folder; give a file path"),
    ("quantize-out-read-only", Q.replace("{out}/r.json", "{ro}/r.json"), "is not writable"),
    ("quantize-threads", Q + " --threads -1", "argument --threads: must be 0..256"),
    ("upscale-threads", "upscale --onnx {in}/fp.onnx {in}/gray.png -o {out}/sr --threads 100000", "0..256"),
    ("export-dev-null", "export --recipe {in}/u8.json -o /dev/null", "/dev/null: is not a regular file"),
    ("eval-scale-0", "eval --onnx {in}/fp.onnx --scale 0 --data {SET5}", "--scale: must be >= 1, got 0"),
    (
        "build-workspace",
        "build {in}/fp.onnx -o {out}/m.plan --workspace-mib 99999999999999",
        "--workspace-mib: must be 1..1048576",
    ),
    ("quantize-huge-images", Q.replace("--images 2", "--images 99999999999"), "found 200"),
    ("quantize-huge-crop", Q + " --crop 100000", "smaller than the crop"),
    ("quantize-nan-lr", Q + " --lr nan", "lr: must be a positive number"),
    (
        "export-io-fp16",
        "export --recipe {in}/u8.json --glue fp32 --io-dtype fp16 -o {out}/m.onnx",
        "float32 I/O",
    ),
    ("export-not-recipe", "export --recipe {in}/notrecipe.json -o {out}/m.onnx", "schema_version"),
    ("export-png-recipe", "export --recipe {in}/bad.png -o {out}/m.onnx", "not valid JSON"),
    ("export-tiny-scale", "export --recipe {in}/tinyscale.json -o {out}/m.onnx", "outside [1e-10, 1e+06]"),
    ("export-huge-upper", "export --recipe {in}/hugeupper.json -o {out}/m.onnx", "upper: 1e+38 is beyond"),
    (
        "export-bad-layer",
        "export --recipe {in}/badlayer.json -o {out}/m.onnx",
        "badlayer.json: layers['nosuch",
    ),
    (
        "export-wrong-lowering",
        "export --recipe {in}/split.json --lowering qdq -o {out}/m.onnx",
        "split.json: recipe layer",
    ),
    (
        "calib-cache-split",
        "calib-cache --recipe {in}/split.json --onnx {in}/fp.onnx -o {out}/c.txt",
        "split.json: recipe layer",
    ),
    ("export-under-file", "export --recipe {in}/u8.json -o {in}/afile/m.onnx", "is a file, not a folder"),
    (
        "build-empty",
        "build {in}/empty.onnx -o {out}/m.plan --backend tensorrt_rtx",
        "empty file, not an ONNX",
    ),
    ("build-trunc", "build {in}/trunc.onnx -o {out}/m.plan --backend tensorrt_rtx", "not a readable ONNX"),
    ("build-recipe", "build {in}/u8.json -o {out}/m.plan --backend tensorrt_rtx", "not a readable ONNX"),
    (
        "build-volume",
        "build {in}/fp.onnx -o {out}/m.plan --backend tensorrt_rtx --min 1x3x8x8 --opt 1x3x8x8 "
        "--max 1x3x20000x20000",
        "over TensorRT's 2^31-1 per tensor",
    ),
    ("build-zero-shape", "build {in}/fp.onnx -o {out}/m.plan --min 1x3x0x0", "expected positive integers"),
    ("build-out-folder", "build {in}/fp.onnx -o {in}", "is a folder; give a file path"),
    (
        "calib-cache-other-scale",
        "calib-cache --recipe {in}/u8.json --onnx {in}/says_x2.onnx -o {out}/c.txt",
        "drq.scale is '2', the recipe's model has '4'",
    ),
    (
        "calib-cache-version",
        "calib-cache --recipe {in}/u8.json --onnx {in}/fp.onnx -o {out}/c.txt --tensorrt-version=-1.-2",
        "TensorRT version '-1.-2': expected major.minor",
    ),
    ("eval-trunc-onnx", "eval --onnx {in}/trunc.onnx --data {SET5} --quiet", "not a readable ONNX model"),
    ("eval-gray-model", "eval --onnx {in}/gray1.onnx --data {SET5} --quiet", "(rank 4, 1 channels)"),
    ("eval-bad-image", "eval --onnx {in}/fp.onnx --data {in}/imgs --quiet", "z.png: cannot read image"),
    ("eval-json-folder", "eval --onnx {in}/fp.onnx --data {SET5} --quiet --json {in}", "is a folder"),
    (
        "eval-torch-threads",
        "eval --arch imdn --weights {W4} --scale 4 --data {SET5} --threads -1",
        "--threads",
    ),
    ("eval-recipe-threads", "eval --recipe {in}/u8.json --data {SET5} --threads -1", "must be 0..256"),
    ("upscale-bad-in-folder", "upscale --onnx {in}/fp.onnx {in}/imgs -o {out}/sr", "z.png: cannot read"),
    ("upscale-not-x4", "upscale --onnx {in}/ident_x4.onnx {in}/gray.png -o {out}/sr", "at x4; expected"),
    ("upscale-gray-model", "upscale --onnx {in}/gray1.onnx {in}/gray.png -o {out}/sr", "1 channels"),
    ("upscale-out-is-file", "upscale --onnx {in}/fp.onnx {in}/gray.png -o {in}/afile", "not a folder"),
    ("upscale-engine-onnx", "upscale --engine {in}/fp.onnx {in}/gray.png -o {out}/sr", "no such manifest"),
    ("upscale-usage", "upscale --onnx", "argument --onnx: expected one argument"),
    ("build-usage", "build --bogus", "the following arguments are required"),
    ("bench-huge-size", "bench --onnx {in}/fp.onnx --size 100000x100000 -o {out}/b", "over the pixel limit"),
    ("bench-out-under-file", "bench --onnx {in}/fp.onnx --size 16x16 -o {in}/afile/b", "is a file, not"),
    ("kernels-out-file", "kernels --out {in}/afile", "exists and is not a folder"),
    ("kernels-no-such-gpu", "kernels --arch 999 --out {out}/k", "no GPU has compute capability 99.9"),
    ("kernels-bad-arch", "kernels --arch sm_abc --out {out}/k", "expected a compute capability"),
    ("report-out-file", "report --out {in}/afile --archs imdn", "exists and is not a folder"),
    ("report-threads", "report --out {out}/rep --archs imdn --threads -1 --sets Set5", "--threads"),
    (
        "zoo-out-read-only",
        "zoo --weights-dir {SHARED}/sr_weights --bench-dir {SHARED}/sr_bench --out {ro}/z",
        "is not writable",
    ),
    (
        "plugin-bench-under-file",
        "plugin-bench --recipe {in}/u8.json --data {SET5} -o {in}/afile/p",
        "is a file",
    ),
]


@pytest.mark.parametrize(("line", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(inputs: Path, tmp_path: Path, capsys, monkeypatch, line, expected):
    out = tmp_path / "out"
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == read_only else real_access(p, m))
    argv = line.format(
        **{
            "in": inputs,
            "out": out,
            "ro": read_only,
            "W4": W4,
            "CALIB": CALIB,
            "SET5": SET5,
            "SHARED": SHARED,
        }
    ).split()
    before = _digest(inputs)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"drq {argv[0]}: ") and expected in err, err
    assert not err.startswith(f"drq {argv[0]}: drq "), err  # the prefix is the dispatcher's alone
    assert _digest(inputs) == before  # no input modified, nothing written among them
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))
    assert list(read_only.iterdir()) == []
