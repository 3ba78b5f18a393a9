"""The differential check of transforming variants (tools/matrix/runtime/transform_check.py): a
variant that changes what a program computes fails a test that asserts nothing about numbers, with
VariantNumericsMismatch; a correct variant passes; what cannot be decided is skipped with its reason
(the RNG, uninitialised memory read before written, values a transform may legitimately treat
differently), every time, never by luck; the state the test sees is left as it was; the check can be
turned off.

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
from tools.matrix.runtime.transform_host import TransformHost
from tools.matrix.tests.fixtures.cellrun import Cell, pool_fixture, uses
from tools.matrix.variants import Variant, VariantNumericsMismatch, VariantTransformError
from tools.matrix.variants.dynamo import DynamoPackage, DynamoReexport
from tools.matrix.variants.export import CppSerdes, Package, Retrace, RunDecomp, Serdes, Strict

FILE = "test_programs.py"
LINEAR, RANDOM, STATE, NO_CALL = (f"{FILE}::{name}" for name in (
    "test_graph_has_a_linear_layer", "test_random_op_in_forward", "test_state_the_test_sees_is_untouched", "test_makes_no_export_call",
))  # fmt: skip
EXPORT = "torch.export.export"
BROKEN_IMPL = "synvariants.perturbing:PerturbConstant"
RNG_SKIP = "skipped: the untransformed program's results depend on the RNG or vary between runs"
SWAP_IMPL = "synvariants.mistranslating:SwapReluForSigmoid"
UNINIT = "test_uninitialised.py"

CELLS: dict[str, Cell] = {
    "broken": Cell("transform_check", (FILE,), variant="perturb", impl=BROKEN_IMPL, applies_to=(EXPORT,)),
    "serdes": Cell("transform_check", (FILE,), variant="serdes", impl="tools.matrix.variants.export:Serdes", applies_to=(EXPORT,)),
    "off": Cell("transform_check", (FILE,), variant="perturb", impl=BROKEN_IMPL, applies_to=(EXPORT,),
                transform_check_off="compared elsewhere"),
    # Programs that allocate uninitialised memory (fixtures/transform_check/test_uninitialised.py).
    "uninit_serdes": Cell("transform_check", (UNINIT,), variant="serdes", impl="tools.matrix.variants.export:Serdes", applies_to=(EXPORT,)),
    "uninit_decomp": Cell("transform_check", (UNINIT,), variant="run_decomp", impl="tools.matrix.variants.export:RunDecomp", applies_to=(EXPORT,)),
    "uninit_swap": Cell("transform_check", (UNINIT,), variant="swap", impl=SWAP_IMPL, applies_to=(EXPORT,)),
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


# The programs of test_uninitialised.py that read uninitialised memory, and the op that returned it.
READS = {
    "test_reads_empty_fed_to_a_layer": "aten.empty.memory_format",
    "test_reads_empty_like": "aten.empty_like.default",
    "test_reads_new_empty": "aten.new_empty.default",
    "test_reads_empty_strided": "aten.empty_strided.default",
    "test_reads_half_written_buffer": "aten.empty.memory_format",
    "test_reads_what_resize_adds": "aten.resize_.default",
    "test_reads_empty_integers": "aten.empty.memory_format",
}
# Those that write it before reading it: deterministic, compared like any program (and each ends in relu).
WRITES = ("test_writes_empty_with_fill_first", "test_writes_empty_like_through_out", "test_writes_new_empty_with_copy",
          "test_writes_every_element_by_slices", "test_writes_empty_strided_with_copy")  # fmt: skip
EXTREME = ("test_extreme_state_fed_to_a_layer", "test_extreme_state_masked_softmax")


def _uninit_skip(op: str) -> str:
    return f"skipped: the untransformed program's results depend on uninitialised memory (from {op}: read before written) (output"


@pytest.mark.parametrize("cell", ["uninit_serdes", "uninit_decomp", "uninit_swap"])
@uses("uninit_serdes", "uninit_decomp", "uninit_swap")
def test_a_program_reading_uninitialised_memory_is_never_compared(cells, cell):
    """Read before written, the memory is whatever the allocator handed back (often the same garbage
    twice, so two plain runs agreed and the transformed one failed or passed by luck): always skipped,
    naming the op, under every variant, the mistranslating one included; never failed."""
    run = cells[cell]
    for name, op in READS.items():
        m = run.matrix(f"{UNINIT}::{name}")
        assert (m["status"], m["transform_check"].partition(" (output")[0] + " (output") == (statuses.PASSED, _uninit_skip(op)), (name, run.explain())


@pytest.mark.parametrize("cell", ["uninit_serdes", "uninit_decomp"])
@uses("uninit_serdes", "uninit_decomp")
def test_a_program_writing_what_it_allocates_is_checked_and_passes(cells, cell):
    run = cells[cell]
    checks = {name: run.matrix(f"{UNINIT}::{name}")["transform_check"] for name in WRITES}
    assert checks == dict.fromkeys(WRITES, "passed"), run.explain()
    assert run.matrix(f"{UNINIT}::test_extreme_state_masked_softmax")["transform_check"] == "passed"


@uses("uninit_swap")
def test_a_mistranslating_variant_is_still_caught_on_programs_that_allocate(cells):
    """relu turned into sigmoid: every deterministic program fails, extreme state or not."""
    run = cells["uninit_swap"]
    for name in WRITES + EXTREME:
        m = run.matrix(f"{UNINIT}::{name}")
        assert (m["status"], m["error_type"]) == (statuses.FAILED, "VariantNumericsMismatch"), (name, run.explain())
        assert m["transform_check"].startswith("failed: output: max abs difference "), (name, m["transform_check"])


@uses("uninit_serdes", "uninit_decomp")
def test_extreme_state_a_decomposition_treats_differently_is_skipped_naming_the_value(cells):
    """A buffer holding 1e20 (what uninitialised memory can hold): run_decompositions' std overflows
    where the fused kernel does not. Not the transform's mistake: skipped, naming the value; serdes,
    which computes the same, passes."""
    name = f"{UNINIT}::test_extreme_state_fed_to_a_layer"
    assert cells["uninit_serdes"].matrix(name)["transform_check"] == "passed"
    m = cells["uninit_decomp"].matrix(name)
    assert m["status"] == statuses.PASSED, cells["uninit_decomp"].explain()
    assert m["transform_check"].startswith(
        "skipped: the programs differ only where the state or inputs hold extreme values (buffer stats[0, 0] = 1e+20: uninitialised memory? "
        "transforms may legitimately compute differently there): output: max abs difference "
    ), m["transform_check"]


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
    ledger = TransformHost()
    export = variant(variant.__name__, ledger).wrap(EXPORT, torch.export.export)
    ep = export(_Scaled(), (torch.randn(2, 4),))
    assert ledger.transform_check() == "passed"
    assert ep.state_dict["steps"].item() == 0  # the check's three runs left the buffer as it was
    assert ledger.check_s > 0 and len(ledger.checks) == 1


def test_strict_has_no_second_program_to_compare():
    ledger = TransformHost()
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
    ledger = TransformHost()
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


# --- uninitialised memory and extreme values: decided every time, never by luck ---------------------


class _EmptyInForward(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.empty(x.shape[0], 8)) + x.sum()


@pytest.mark.parametrize(
    ("program", "op"),
    [
        (_EmptyInForward(), "aten.empty.memory_format"),
        (lambda x: torch.empty_like(x) * 2 + x, "aten.empty_like.default"),
        (lambda x: x.new_empty((2, 3)).sum(1), "aten.new_empty.default"),
        (lambda x: torch.empty_permuted((2, 8), (1, 0)).sigmoid() + x, "aten.empty_permuted.default"),
        (lambda x: x.clone().resize_(20)[-4:] > 0, "aten.resize_.default"),  # bool output: only the grown elements are read
        (lambda x: torch.empty(2, dtype=torch.bool) | (x[:, 0] > 0), "aten.empty.memory_format"),
    ],
    ids=["empty_into_linear", "empty_like", "new_empty", "empty_permuted", "resize_grown", "bool_empty"],
)
def test_reading_uninitialised_memory_is_skipped_every_time(program: Any, op: str):
    """The same program checked 10 times, against itself: always the same skip, naming the op."""
    x = torch.randn(2, 8)
    summaries = {_check(program, program, x).summary().partition(" (output")[0] for _ in range(10)}
    assert summaries == {f"skipped: the untransformed program's results depend on uninitialised memory (from {op}: read before written)"}


def _filled_then_used(x: torch.Tensor) -> torch.Tensor:
    buf = torch.empty(x.shape[0], 3)
    buf.copy_(x[:, :3])
    grown = x[:, 0].clone().resize_(4)  # 2 elements grown, then written
    grown[2:] = 1.0
    return buf.relu() + grown.sum()


def test_writing_uninitialised_memory_before_reading_it_is_compared():
    x = torch.randn(2, 8)
    assert _check(_filled_then_used, _filled_then_used, x).summary() == "passed"
    assert _check(_filled_then_used, lambda x: _filled_then_used(x) + 0.5, x).summary().startswith("failed: output: max abs difference 0.5 ")


def test_a_transform_that_starts_reading_uninitialised_memory_fails():
    """The untransformed program reads none: a transformed one that does is the transform's doing,
    failed every time (the memory filled the same way, no luck)."""
    x = torch.randn(2, 8)
    summaries = {_check(lambda x: x * 2, lambda x: torch.empty_like(x) * 0 + x * 2, x).summary() for _ in range(5)}
    assert summaries == {f"failed: output: max abs difference inf at index [0, 0] (nan instead of {float(x[0, 0] * 2):.6g}), max rel difference inf"}


def test_uninitialised_memory_inside_a_cond_branch_is_filled_too():
    class Branches(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cond(x.sum() > -100, lambda t: torch.empty_like(t) + t, lambda t: t.cos(), (x,))

    module = torch.export.export(Branches(), (torch.ones(2, 3),)).module()
    assert _check(module, module, torch.ones(2, 3)).summary().startswith(
        "skipped: the untransformed program's results depend on uninitialised memory (from aten.empty_like.default: read before written)"
    )


def test_filled_fills_what_is_uninitialised_and_nothing_else():
    from tools.matrix.runtime.uninitialised import Filled

    kept = torch.arange(3.0)
    with Filled(0) as nan, torch.no_grad():
        a, i, b = torch.empty(2), torch.empty(2, dtype=torch.int32), torch.empty(2, dtype=torch.bool)
        grown = kept.clone().resize_(5)
        z = torch.zeros(2)
    with Filled(1) as big:
        c = torch.empty_like(z)
    assert a.isnan().all() and i.tolist() == [2**31 - 1] * 2 and b.tolist() == [True, True] and z.tolist() == [0.0, 0.0]
    assert grown[:3].tolist() == [0.0, 1.0, 2.0] and grown[3:].isnan().all()
    assert c.tolist() == [torch.finfo(torch.float32).max] * 2
    assert nan.ops == {"aten.empty.memory_format", "aten.resize_.default"} and big.ops == {"aten.empty_like.default"}


class _ExtremeBuffer(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.register_buffer("b", torch.ones(2, 8))
        self.b[1, 3] = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.std_mean(self.b * x, -1)[0]


def _std_by_squares(v: torch.Tensor) -> torch.Tensor:
    """std over the last dimension as a decomposition may compute it: through the sum of squares,
    which overflows float32 from about 1e19 on where torch.std does not."""
    return ((v * v).mean(-1) - v.mean(-1) ** 2).clamp_min(0).mul(8 / 7).sqrt()


@pytest.mark.parametrize(("value", "shown"), [(1e20, "1e+20"), (-1e25, "-1e+25"), (5e30, "5e+30"), (1e-42, "1.00053e-42")])
def test_a_difference_only_on_extreme_state_is_skipped_naming_it(value: float, shown: str):
    module = _ExtremeBuffer(value)
    transformed = _ExtremeBuffer(value)
    transformed.forward = lambda x: _std_by_squares(transformed.b * x)
    x = torch.full((2, 8), 3.0) + torch.arange(8.0)
    outcome = _check(module, transformed, x)
    if value == 1e-42:  # a subnormal is harmless here: nothing differs, nothing to explain
        assert outcome.summary() == "passed"
        return
    assert outcome.summary().startswith(
        f"skipped: the programs differ only where the state or inputs hold extreme values (buffer b[1, 3] = {shown}: "
        "uninitialised memory? transforms may legitimately compute differently there): output: max abs difference "
    ), outcome.summary()
    assert module.b[1, 3].item() == transformed.b[1, 3].item() == pytest.approx(value)  # the taming was undone


def test_a_mistake_on_extreme_state_still_fails_when_it_shows_on_tame_values_too():
    module, transformed = _ExtremeBuffer(1e20), _ExtremeBuffer(1e20)
    transformed.forward = lambda x: module.forward(x).sigmoid()
    assert _check(module, transformed, torch.ones(2, 8)).summary().startswith("failed: output: max abs difference ")


def test_extreme_inputs_are_named_too():
    x = torch.tensor([[1.0, 2e19, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]])
    assert _check(lambda x: torch.std(x, -1), _std_by_squares, x).summary().startswith(
        "skipped: the programs differ only where the state or inputs hold extreme values (input[0][0][0, 1] = 2e+19: "
    )
    assert x[0, 1].item() == pytest.approx(2e19)


def test_deterministic_settings_are_put_back():
    from torch.utils import deterministic

    fill = deterministic.fill_uninitialized_memory
    assert not torch.are_deterministic_algorithms_enabled()
    assert _check(lambda x: x + 1, lambda x: x + 1, torch.ones(2)).summary() == "passed"
    assert not torch.are_deterministic_algorithms_enabled() and deterministic.fill_uninitialized_memory == fill
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        _check(lambda x: x + 1, lambda x: x + 1, torch.ones(2))
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
