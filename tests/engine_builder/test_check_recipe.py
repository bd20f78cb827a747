"""One recipe check for every quantizing lowering (engine_builder.lowerings.common.check_recipe)."""

from __future__ import annotations

import pytest

from engine_builder.errors import ExportError
from engine_builder.lowerings.common import check_recipe
from engine_builder.lowerings.registry import lower
from tests.engine_builder.test_calib_cache import make_recipe
from tests.fakes.tiny_onnx import float_sr


@pytest.mark.parametrize(
    ("lowering", "budget", "given", "suggested"),
    [("drq-split", "split", "b-bit", "drq-plugin"), ("drq-plugin", "b-bit", "split", "drq-split")],
)
def test_budget_mismatch_names_the_lowering_that_fits(lowering, budget, given, suggested):
    from engine_builder.export.torch_export import export_float_onnx
    from tests.engine_builder.test_export import TinySR
    from tests.engine_builder.test_export import make_recipe as recipe_of

    net = TinySR().eval()
    with pytest.raises(ExportError) as err:
        lower(lowering, export_float_onnx(net, scale=2), recipe_of(net, given))
    assert str(err.value) == (
        f"recipe: {lowering} lowers the {budget!r} budget, this recipe has {given!r}; "
        f"use --lowering {suggested}"
    )


def test_every_lowering_needs_a_recipe_and_qdq_checks_each_layer():
    for lowering, budget in (("qdq", "uniform"), ("drq-split", "split"), ("drq-plugin", "b-bit")):
        with pytest.raises(ExportError, match=f"^{lowering}: needs a recipe with the '{budget}' budget"):
            lower(lowering, float_sr(), None)
    recipe = make_recipe({"head": 0.1, "tail": 0.2}, bits=4)
    with pytest.raises(ExportError, match=r"^recipe layer 'head': qdq needs 8-bit signed symmetric"):
        check_recipe(recipe, "qdq", "uniform", int8_layers=True)
    uniform = make_recipe({"head": 0.1})
    assert check_recipe(uniform, "qdq", "uniform", int8_layers=True) is uniform
    assert check_recipe(make_recipe({"head": 0.1}, budget="split"), "drq-split", "split").budget == "split"
