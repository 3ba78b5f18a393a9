"""The differential check of transforming variants (tools/matrix/runtime/transform_check.py): a
variant that changes what a program computes fails a test that asserts nothing about numbers, with
VariantNumericsMismatch; a correct variant passes; what cannot be decided is skipped with its reason;
the state the test sees is left as it was; the check can be turned off.

Cells run through cell_main on fixtures/transform_check (real torch programs); the rest calls the
check and the built-in variants in this process.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from tools.matrix import statuses
from tools.matrix.runtime import transform_check
from tools.matrix.tests.fixtures.cellrun import Cell, pool_fixture, uses
from tools.matrix.variants import TransformLedger, Variant, VariantNumericsMismatch, VariantTransformError
from tools.matrix.variants.dynamo import DynamoPackage, DynamoReexport
from tools.matrix.variants.export import CppSerdes, Package, Retrace, RunDecomp, Serdes, Strict

FILE = "test_programs.py"
LINEAR, RANDOM, STATE, NO_CALL = (f"{FILE}::{name}" for name in (
    "test_graph_has_a_linear_layer", "test_random_op_in_forward", "test_state_the_test_sees_is_untouched", "test_makes_no_export_call",
))  # fmt: skip
EXPORT = "torch.export.export"
BROKEN_IMPL = "synvariants.perturbing:PerturbConstant"
RNG_SKIP = "skipped: the untransformed program's results depend on the RNG or vary between runs"

CELLS: dict[str, Cell] = {
    "broken": Cell("transform_check", (FILE,), variant="perturb", impl=BROKEN_IMPL, applies_to=(EXPORT,)),
    "serdes": Cell("transform_check", (FILE,), variant="serdes", impl="tools.matrix.variants.export:Serdes", applies_to=(EXPORT,)),
    "off": Cell("transform_check", (FILE,), variant="perturb", impl=BROKEN_IMPL, applies_to=(EXPORT,),
                transform_check_off="compared elsewhere"),
}  # fmt: skip


cells = pool_fixture(CELLS, "transform_check")


# --- through cell_main: what the record says --------------------------------------------------


@uses("broken")
def test_a_variant_that_changes_numerics_fails_a_test_that_checks_none(cells):
    run = cells["broken"]
    m = run.matrix(LINEAR)
    assert (m["status"], m["transform_failed"], m["error_type"]) == (statuses.FAILED, True, "VariantNumericsMismatch"), run.explain()
    assert m["message"].startswith(
        "tools.matrix.variants.VariantNumericsMismatch: variant 'perturb' changed what the result of torch.export.export computes: output: max abs difference "
    )
    assert m["transform_check"] == m["message"].replace("tools.matrix.variants.VariantNumericsMismatch: variant 'perturb' changed what the result of torch.export.export computes: ", "failed: ")  # fmt: skip
    assert m["check_s"] > 0
    # The perturbed buffer is caught though the output never reads it: the programs differ before any call.
    state = run.matrix(STATE)
    assert (state["status"], state["error_type"]) == (statuses.FAILED, "VariantNumericsMismatch"), run.explain()
    assert "buffer calls before the call: max abs difference 0.5 at index [] (0.5 instead of 0)" in state["message"]
    # A random program is never compared, so the broken variant cannot fail it.
    random = run.matrix(RANDOM)
    assert random["status"] == statuses.PASSED and random["transform_check"].startswith(RNG_SKIP), random


@uses("serdes")
def test_a_correct_variant_passes_and_leaves_the_tests_state_alone(cells):
    run = cells["serdes"]
    assert run.returncode == 0, run.explain()
    assert run.statuses == {LINEAR: statuses.PASSED, RANDOM: statuses.PASSED, STATE: statuses.PASSED, NO_CALL: statuses.PASSED}, (
        run.explain()
    )
    checks = {nodeid: t["metadata"]["matrix"].get("transform_check") for nodeid, t in run.tests.items()}
    assert checks[LINEAR] == checks[STATE] == "passed"
    assert checks[RANDOM].startswith(RNG_SKIP) and "output: max abs difference" in checks[RANDOM]
    assert checks[NO_CALL] is None and "check_s" not in run.matrix(NO_CALL)


@uses("off")
def test_the_check_can_be_turned_off_with_a_reason(cells):
    run = cells["off"]
    m = run.matrix(LINEAR)
    assert (m["status"], m["transform_check"]) == (statuses.PASSED, "off: compared elsewhere"), run.explain()


# --- in this process: the built-in variants and the check itself --------------------------------


class _Scaled(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.steps.add_(1)
        return self.linear(x).relu(), x.argmax(-1)


@pytest.mark.parametrize("variant", [CppSerdes, Retrace, Package, Serdes, RunDecomp])
def test_every_program_variant_passes_the_check_on_a_faithful_transform(variant: type[Variant]):
    ledger = TransformLedger()
    export = variant(variant.__name__, ledger).wrap(EXPORT, torch.export.export)
    ep = export(_Scaled(), (torch.randn(2, 4),))
    assert ledger.transform_check() == "passed"
    assert ep.state_dict["steps"].item() == 0  # the check's three runs left the buffer as it was
    assert ledger.check_s > 0 and len(ledger.checks) == 1


def test_strict_has_no_second_program_to_compare():
    ledger = TransformLedger()
    Strict("strict", ledger).wrap(EXPORT, torch.export.export)(_Scaled(), (torch.randn(2, 4),))
    assert ledger.checks == [] and ledger.transform_check() is None


class _NudgeGraph(DynamoPackage):
    """The dynamo package round trip, then the loaded GraphModule's weight nudged."""

    def transform_graph(self, call: Any, graph_module: Any, args: tuple, kwargs: dict) -> Any:
        loaded = super().transform_graph(call, graph_module, args, kwargs)
        with torch.no_grad():
            next(p for p in loaded.parameters()).add_(1.0)
        return loaded


@pytest.mark.parametrize("variant", [DynamoPackage, DynamoReexport, _NudgeGraph])
def test_dynamo_variants_check_the_graph_module_on_the_calls_inputs(variant: type[Variant]):
    ledger = TransformLedger()
    exporter = variant("v", ledger).wrap("torch._dynamo.export", torch._dynamo.export)
    module = torch.nn.Linear(3, 2)
    make = exporter(module)
    assert ledger.checks == []  # the programs exist only once the returned function is called
    if variant is _NudgeGraph:
        with pytest.raises(
            VariantNumericsMismatch,
            match=r"^variant 'v' changed what the result of torch._dynamo.export computes: parameter \S*weight before the call: max abs difference 1 ",
        ):
            make(torch.ones(1, 3))
        assert ledger.transform_check().startswith("failed: parameter ")
    else:
        make(torch.ones(1, 3))
        assert ledger.transform_check() == "passed"


def test_a_mismatch_is_a_transform_error():
    assert issubclass(VariantNumericsMismatch, VariantTransformError)


def _check(original: Any, transformed: Any, *args: Any, state: tuple[Any, ...] = ()) -> transform_check.Outcome:
    return transform_check.compare(original, transformed, args, {}, state)


def test_integers_are_compared_exactly():
    outcome = _check(lambda x: x.to(torch.int64), lambda x: x.to(torch.int64) + (x > 2.5).to(torch.int64), torch.tensor([1.0, 2.0, 3.0]))
    assert (
        outcome.summary()
        == "failed: output: max abs difference 1 at index [2] (4 instead of 3), max rel difference 0.333333 (exact comparison for integer and bool)"
    )


def test_floats_within_tolerance_pass_and_beyond_it_fail():
    x = torch.ones(4)
    assert _check(lambda x: x * 3, lambda x: x * 3 + 1e-7, x).verdict == transform_check.PASSED
    assert _check(lambda x: x * 3, lambda x: x * 3 + 1e-3, x).detail.startswith("output: max abs difference 0.000999")


def test_structure_dtype_and_shape_differences_are_named():
    x = torch.ones(2)
    assert _check(lambda x: (x, x), lambda x: [x, x], x).detail.startswith("the outputs' structure differs: ")
    assert _check(lambda x: {"a": x}, lambda x: {"a": x.double()}, x).detail == "output['a']: dtype torch.float64 instead of torch.float32"
    assert _check(lambda x: (x,), lambda x: (x[:1],), x).detail == "output[0]: shape torch.Size([1]) instead of torch.Size([2])"


def test_an_in_place_update_of_an_input_is_compared():
    def original(x: torch.Tensor) -> None:
        x.mul_(2)

    def transformed(x: torch.Tensor) -> None:
        x.mul_(3)

    x = torch.ones(2)
    assert _check(original, transformed, x).detail.startswith("input[0][0] after the call: max abs difference 1 ")
    assert torch.equal(x, torch.ones(2))  # the runs had copies


class _Counter(torch.nn.Module):
    def __init__(self, counts: bool) -> None:
        super().__init__()
        self.counts = counts
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.counts:
            self.seen.add_(1)
        return x + 1


def test_a_lost_buffer_update_is_caught_and_the_buffers_put_back():
    """What the dynamo_package xfail shows: the transformed program no longer updates a buffer."""
    original, transformed = _Counter(counts=True), _Counter(counts=False)
    outcome = _check(original, transformed, torch.ones(2))
    assert outcome.detail == "buffer seen after the call: max abs difference 1 at index [] (0 instead of 1), max rel difference 1 (exact comparison for integer and bool)"  # fmt: skip
    assert original.seen.item() == 0 and transformed.seen.item() == 0


class _ReturnsItsBuffer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("last", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last.copy_(x)
        return self.last  # aliases the buffer that is put back between runs


def test_an_output_aliasing_a_buffer_is_compared_as_it_was_returned():
    assert _check(_ReturnsItsBuffer(), _ReturnsItsBuffer(), torch.ones(3)).summary() == "passed"
    transformed = _ReturnsItsBuffer()
    transformed.forward = lambda x: x.clone()  # same values, no buffer update
    assert _check(_ReturnsItsBuffer(), transformed, torch.ones(3)).detail.startswith("buffer last after the call: max abs difference 1 ")


def test_undecidable_is_skipped_with_the_reason():
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise ValueError("data-dependent")

    x = torch.ones(2)
    assert (
        _check(broken, lambda x: x, x).summary()
        == "skipped: cannot be compared: the untransformed program raised ValueError: data-dependent"
    )
    assert _check(lambda x: x.bernoulli(), lambda x: x, torch.full((64,), 0.5)).summary().startswith(RNG_SKIP)
    uncopyable = (i for i in range(2))
    assert (
        _check(lambda g: 1, lambda g: 1, uncopyable).summary().startswith("skipped: the call's inputs cannot be deep-copied (TypeError: ")
    )


_SEEN: list[int] = []


def _note_call(x: torch.Tensor) -> torch.Tensor:
    _SEEN.append(1)  # a side effect the test could count
    return x


torch.fx.wrap("_note_call")


class _CallsPython(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _note_call(x) + 1


def test_a_graph_calling_a_python_function_is_not_run():
    graph_module = torch.fx.symbolic_trace(_CallsPython())
    outcome = _check(graph_module, graph_module, torch.ones(2))
    assert outcome.summary() == f"skipped: the program calls the Python function {__name__}._note_call (side effects the test could see)"
    assert _SEEN == []


def test_a_transformed_program_that_raises_where_the_original_ran_fails():
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("lost an op")

    assert _check(lambda x: x, broken, torch.ones(2)).summary() == "failed: the transformed program raised RuntimeError: lost an op"


def test_state_rng_and_grad_mode_are_put_back():
    module = torch.nn.BatchNorm1d(3)  # training mode: forward updates running stats in place
    before = {k: v.clone() for k, v in module.state_dict().items()}
    x = torch.randn(4, 3)
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    with torch.enable_grad():
        outcome = _check(module, module, x)
        assert torch.is_grad_enabled()
    assert outcome.verdict == transform_check.PASSED
    assert torch.equal(torch.rand(2), expected)
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name


class _Warns(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        warnings.warn("from forward", UserWarning, stacklevel=1)
        return x


def test_the_runs_add_no_warning_the_test_could_see():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert _check(_Warns(), _Warns(), torch.ones(1)).summary() == "passed"
    assert seen == []


def test_summary_over_a_tests_calls():
    passed, skipped = transform_check.Outcome("passed"), transform_check.Outcome("skipped", "random")
    failed = transform_check.Outcome("failed", "output: x")
    assert transform_check.summarize([]) is None
    assert transform_check.summarize([passed, passed]) == "passed"
    assert transform_check.summarize([passed, skipped]) == "skipped: random (1 of 2 calls)"
    assert transform_check.summarize([skipped, failed, passed]) == "failed: output: x (1 of 3 calls)"
