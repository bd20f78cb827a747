"""Recipe schema: JSON round trips, field-named validation errors, schema versioning, grid arithmetic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from drq.errors import RecipeError
from drq.grids import bbit_grid, paper_grid, split_grid, split_outlier_scale
from drq.recipe import (
    CalibrationInfo,
    DualRegionAct,
    LayerRecipe,
    ModelIdentity,
    Recipe,
    UniformAct,
    WeightQuant,
    f32,
    load_recipe,
    migrate_v1,
    recipe_from_dict,
    save_recipe,
)


def _recipe(budget: str = "split") -> Recipe:
    if budget == "uniform":
        act = UniformAct(bits=8, scale=f32(0.01))
        method = "minmax"
    else:
        outlier = split_outlier_scale(-0.5, 0.25, 3.0, 4) if budget == "split" else None
        act = DualRegionAct(
            budget=budget,
            bits=4,
            lower=f32(-0.5),
            breakpoint=f32(0.25),
            upper=f32(3.0),
            outlier_scale=outlier,
            outlier_channels=(1, 5),
        )
        method = "drq+saft"
    layers = {
        "head": LayerRecipe("conv2d", WeightQuant(8, (f32(0.02), f32(0.03)), 0), act),
        "body.0.c1": LayerRecipe("conv2d", WeightQuant(4, (f32(0.1),), None), act),
    }
    return Recipe(
        model=ModelIdentity("imdn", 4, "a" * 64, 1.0, "w.pth"),
        method=method,
        w_bits=4,
        a_bits=4,
        budget=budget,
        weight_mode="per-channel",
        calibration=CalibrationInfo(100, 96, 0, "bsd200", 10, 1.5),
        layers=layers,
    )


@pytest.mark.parametrize("budget", ["uniform", "paper", "b-bit", "split"])
def test_json_round_trip_is_exact(tmp_path: Path, budget: str) -> None:
    recipe = _recipe(budget)
    path = save_recipe(recipe, tmp_path / "r.json")
    again = load_recipe(path)
    assert again == recipe
    assert again.sha256() == recipe.sha256()
    assert list(again.layers) == ["head", "body.0.c1"]  # execution order survives


def test_sha256_changes_with_any_parameter() -> None:
    a = _recipe("split")
    data = a.to_dict()
    data["layers"]["head"]["weight"]["scale"][0] = f32(0.021)
    assert recipe_from_dict(data).sha256() != a.sha256()


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=3), "schema_version: 3 is newer than this drq understands"),
        (lambda d: d.update(schema_version=0), "schema_version: 0 is not supported"),
        (lambda d: d.pop("layers"), "top level: missing field(s) layers"),
        (lambda d: d.update(extra=1), "top level: unknown field(s) extra"),
        (lambda d: d.update(method="magic"), "method: must be one of minmax"),
        (lambda d: d["model"].update(scale=0), "model.scale: must be a positive integer"),
        (
            lambda d: d["layers"]["head"]["weight"].update(bits=9),
            "layers['head'].weight.bits: must be an integer in 2..8",
        ),
        (
            lambda d: d["layers"]["head"]["weight"]["scale"].__setitem__(1, -1.0),
            "layers['head'].weight.scale[1]: must be > 0",
        ),
        (
            lambda d: d["layers"]["head"]["act"].update(breakpoint=5.0),
            "layers['head'].act: need lower <= 0 < breakpoint < upper",
        ),
        (lambda d: d["layers"]["head"]["act"].update(kind="weird"), "layers['head'].act.kind: must be"),
        (
            lambda d: d["layers"]["head"]["act"].update(outlier_scale=None),
            "layers['head'].act.outlier_scale: required by the split budget",
        ),
        (lambda d: d["layers"]["head"]["act"].update(outlier_channels=[5, 1]), "must be sorted and unique"),
        (
            lambda d: d.update(budget="paper"),
            "layers['head'].act.budget: 'split' differs from budget 'paper'",
        ),
        (
            lambda d: d.update(budget="uniform", method="minmax"),
            "act: kind 'dual_region' does not match budget",
        ),
        (lambda d: d.update(layers={}), "layers: a recipe must quantize at least one layer"),
    ],
)
def test_invalid_fields_are_named(tmp_path: Path, mutate, message: str) -> None:
    data = _recipe("split").to_dict()
    mutate(data)
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, data))
    text = str(info.value)
    assert text.startswith(str(tmp_path / "bad.json") + ": ")
    assert message in text
    assert "\n" not in text


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(RecipeError, match=r"broken.json: not valid JSON \(line 1, column 2\)"):
        load_recipe(broken)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    save_recipe(_recipe(), tmp_path / "r.json")
    save_recipe(_recipe("b-bit"), tmp_path / "r.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert load_recipe(tmp_path / "r.json").budget == "b-bit"


def test_bbit_grid_at_8_bits_matches_the_spec() -> None:
    act = DualRegionAct("b-bit", 8, f32(-2.0), f32(0.5), f32(4.0))
    grid = bbit_grid(act)
    assert grid.dense_limit == 63
    assert grid.s_d == np.float32(0.5) / np.float32(63)
    assert grid.s_p == (np.float32(4.0) - np.float32(0.5)) / np.float32(63)
    assert grid.s_n == (np.float32(2.0) - np.float32(0.5)) / np.float32(63)
    params = grid.params()
    assert params.dtype == np.float32 and params.tolist()[4:] == [63.0, 63.0, 63.0]


def test_bbit_code_split_steps_and_validation() -> None:
    """A searched split (D, P, N) = (87, 40, 41): tail steps divide by their own code counts."""
    act = DualRegionAct(
        "b-bit", 8, f32(-2.0), f32(0.5), f32(4.0), dense_limit=87, pos_tail_codes=40, neg_tail_codes=41
    )
    grid = bbit_grid(act)
    assert grid.s_d == np.float32(0.5) / np.float32(87)
    assert grid.s_p == (np.float32(4.0) - np.float32(0.5)) / np.float32(40)
    assert grid.s_n == (np.float32(2.0) - np.float32(0.5)) / np.float32(41)
    assert grid.params().tolist()[4:] == [87.0, 40.0, 41.0]
    # the uniform grid's range is reachable: codes -128..127 at 8 bits, -8..7 at 4 bits
    DualRegionAct("b-bit", 4, -1.0, 0.5, 1.0, dense_limit=5, pos_tail_codes=2, neg_tail_codes=3)
    bad = [
        (
            {"dense_limit": 5, "pos_tail_codes": 3},
            "pos_tail_codes: dense_limit + pos_tail_codes must be <= 7",
        ),
        (
            {"dense_limit": 5, "pos_tail_codes": 2, "neg_tail_codes": 4},
            "neg_tail_codes: dense_limit + neg_tail_codes must be <= 8",
        ),
        ({"dense_limit": 0}, "dense_limit: must be a positive integer, got 0"),
        ({"pos_tail_codes": True}, "pos_tail_codes: must be a positive integer, got True"),
    ]
    for fields, message in bad:
        with pytest.raises(RecipeError, match=re.escape(message)):
            DualRegionAct("b-bit", 4, -1.0, 0.5, 1.0, **fields)
    with pytest.raises(RecipeError, match="dense_limit: only the b-bit budget has a code split, not 'paper'"):
        DualRegionAct("paper", 4, -1.0, 0.5, 1.0, dense_limit=3)


def test_schema_1_recipe_loads_with_the_fixed_split(tmp_path: Path) -> None:
    """A version-1 b-bit recipe (no code split fields) loads unchanged: D = P = N = 2^(b-2)-1."""
    data = _recipe("b-bit").to_dict()
    for layer in data["layers"].values():
        for name in ("dense_limit", "pos_tail_codes", "neg_tail_codes"):
            del layer["act"][name]
    data["schema_version"] = 1
    before = json.dumps(data, sort_keys=True)
    recipe = load_recipe(_write(tmp_path, data))
    assert json.dumps(data, sort_keys=True) == before  # the input is not modified
    assert recipe.schema_version == 2
    act = recipe.layers["head"].act
    assert (act.dense_limit, act.pos_tail_codes, act.neg_tail_codes) == (3, 3, 3)
    assert recipe == _recipe("b-bit")


def test_bbit_grid_without_negative_tail() -> None:
    act = DualRegionAct("b-bit", 4, 0.0, f32(0.5), f32(4.0))  # post-ReLU input
    assert act.bounded_below
    assert bbit_grid(act).s_n == 0.0


def test_split_and_paper_grids() -> None:
    s_o = split_outlier_scale(-1.0, 0.5, 3.0, 8)
    assert s_o == float(np.float32(np.float32(2.5) / np.float32(127)))
    split = split_grid(DualRegionAct("split", 8, -1.0, 0.5, 3.0, outlier_scale=s_o))
    assert (split.dense_qmax, split.outlier_qmin, split.outlier_qmax) == (127, -128, 127)
    paper = paper_grid(DualRegionAct("paper", 4, -1.0, 0.5, 3.0))
    assert not paper.bounded_below
    assert paper.s_d == np.float32(1.0) / np.float32(15)
    assert paper.s_p == np.float32(2.5) / np.float32(7)
    relu = paper_grid(DualRegionAct("paper", 4, 0.0, 0.5, 3.0))
    assert relu.bounded_below and relu.s_n == 0 and relu.s_d == np.float32(0.5) / np.float32(15)


def _mixed_recipe() -> Recipe:
    split = _recipe("split")
    act = DualRegionAct(
        budget="split",
        bits=8,
        lower=f32(-0.5),
        breakpoint=f32(0.25),
        upper=f32(3.0),
        outlier_scale=split_outlier_scale(-0.5, 0.25, 3.0, 8),
    )
    layers = {
        "head": LayerRecipe("conv2d", split.layers["head"].weight, UniformAct(8, f32(1 / 255), -128)),
        "body.0.c1": LayerRecipe("conv2d", split.layers["body.0.c1"].weight, act),
    }
    from dataclasses import replace

    return replace(
        split, a_bits=8, budget="mixed", layers=layers, plan={"head": "int8", "body.0.c1": "split"}
    )


def test_mixed_plan_round_trips(tmp_path: Path) -> None:
    recipe = _mixed_recipe()
    loaded = load_recipe(save_recipe(recipe, tmp_path / "m.json"))
    assert loaded == recipe and loaded.plan == {"head": "int8", "body.0.c1": "split"}
    assert loaded.sha256() == recipe.sha256()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["plan"].pop("head"), "plan: must list every layer"),
        (lambda d: d["plan"].update({"head": "int4"}), "plan['head']: must be one of int8, split, fp16"),
        (lambda d: d["plan"].update({"head": "split"}), "plan['head']: split needs a split dual-region act"),
        (lambda d: d["plan"].update({"body.0.c1": "int8"}), "plan['body.0.c1']: int8 needs an 8-bit"),
        (lambda d: d.update(a_bits=4), "a_bits: the mixed budget runs INT8 kernels and needs 8"),
        (lambda d: d.update(plan=[]), "plan: must be an object"),
    ],
)
def test_invalid_plans_are_named(tmp_path: Path, mutate, message: str) -> None:
    data = _mixed_recipe().to_dict()
    mutate(data)
    with pytest.raises(RecipeError, match=re.escape(message)):
        load_recipe(_write(tmp_path, data))


def test_plan_only_for_the_mixed_budget(tmp_path: Path) -> None:
    data = _recipe("split").to_dict()
    data["plan"] = {"head": "int8", "body.0.c1": "int8"}
    with pytest.raises(RecipeError, match="plan: only the mixed budget has a per-layer plan"):
        load_recipe(_write(tmp_path, data))


def test_version_1_recipes_load_through_the_migration(tmp_path: Path) -> None:
    data = _recipe("split").to_dict()
    data["schema_version"] = 1
    del data["plan"]
    assert migrate_v1(data)["plan"] == {} and data["schema_version"] == 1  # input not modified
    loaded = load_recipe(_write(tmp_path, data))
    assert loaded.schema_version == 2 and loaded.plan == {} and loaded.layers == _recipe("split").layers
