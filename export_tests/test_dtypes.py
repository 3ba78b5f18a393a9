"""torch.export across dtypes.

Covers reduced-precision floats (bf16, fp16), float8 (e4m3fn / e5m2)
conversions, complex64, integer (int32 / int64 / uint8) and bool tensors, and
type promotion. Every test checks that the exported module's outputs have the
same dtype and values as eager, and that the dtype recorded in the graph
metadata matches.
"""

import pytest
import torch
from torch.export import Dim, export
from torch.testing import assert_close


def _output_dtypes(ep):
    """dtypes of the tensor outputs as recorded in the graph metadata."""
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    vals = []
    for arg in out_node.args[0]:
        if isinstance(arg, torch.fx.Node) and isinstance(arg.meta.get("val"), torch.Tensor):
            vals.append(arg)
    user_outs = set(ep.graph_signature.user_outputs)
    return [n.meta["val"].dtype for n in vals if n.name in user_outs]


def _assert_same(actual, expected):
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert_close(actual, expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_linear_in_low_and_high_precision(device, dtype):
    torch.manual_seed(0)
    mod = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)).to(device, dtype)
    x = torch.randn(3, 8, device=device, dtype=dtype)
    ep = export(mod, (x,))

    assert all(v.dtype == dtype for v in ep.state_dict.values())
    assert _output_dtypes(ep) == [dtype]
    x2 = torch.randn(3, 8, device=device, dtype=dtype)
    _assert_same(ep.module()(x2), mod(x2))


@pytest.mark.parametrize("f8", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_quantize_dequantize(device, f8):
    torch.manual_seed(0)
    fmax = torch.finfo(f8).max

    class M(torch.nn.Module):
        def forward(self, x):
            scale = fmax / x.abs().amax().clamp(min=1e-12)
            q = (x * scale).clamp(-fmax, fmax).to(f8)
            return q, q.to(torch.float32) / scale

    mod = M().to(device)
    x = torch.randn(16, device=device)
    ep = torch.export.export(mod, (x,))

    assert _output_dtypes(ep) == [f8, torch.float32]
    x2 = torch.randn(16, device=device) * 3
    q, deq = ep.module()(x2)
    q_ref, deq_ref = mod(x2)
    assert q.dtype == f8
    # float8 has no arithmetic kernels everywhere: compare the raw bits.
    assert torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))
    _assert_same(deq, deq_ref)


def test_float8_roundtrip_loses_precision_like_eager(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return x.to(torch.float8_e4m3fn).to(torch.bfloat16), x.to(torch.float8_e5m2).to(torch.float16)

    mod = M().to(device)
    x = torch.tensor([0.1, 1.0, 3.3, -7.77, 300.0], device=device)
    ep = export(mod, (x,))

    assert _output_dtypes(ep) == [torch.bfloat16, torch.float16]
    a, b = ep.module()(x)
    a_ref, b_ref = mod(x)
    _assert_same(a, a_ref)
    _assert_same(b, b_ref)
    # e4m3fn cannot represent 3.3 exactly; the exported program must round too.
    assert a[2].item() != pytest.approx(3.3, abs=1e-3)


def test_complex64_arithmetic(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, z, w):
            prod = z * w.conj()
            return prod, prod.abs(), torch.view_as_real(prod)

    mod = M().to(device)
    z = torch.randn(5, dtype=torch.complex64, device=device)
    w = torch.randn(5, dtype=torch.complex64, device=device)
    ep = torch.export.export(mod, (z, w))

    assert _output_dtypes(ep) == [torch.complex64, torch.float32, torch.float32]
    z2 = torch.randn(5, dtype=torch.complex64, device=device)
    w2 = torch.randn(5, dtype=torch.complex64, device=device)
    out, ref = ep.module()(z2, w2), mod(z2, w2)
    for a, b in zip(out, ref):
        _assert_same(a, b)


def test_complex_from_real_parts(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, re, im):
            z = torch.complex(re, im)
            return (z * z).real, z.angle()

    mod = M().to(device)
    re, im = torch.randn(6, device=device), torch.randn(6, device=device)
    ep = export(mod, (re, im))

    assert _output_dtypes(ep) == [torch.float32, torch.float32]
    out, ref = ep.module()(re, im), mod(re, im)
    for a, b in zip(out, ref):
        _assert_same(a, b)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_integer_division_and_remainder(device, dtype):
    class M(torch.nn.Module):
        def forward(self, a, b):
            return a // b, a % b, torch.div(a, b, rounding_mode="trunc"), a / b

    mod = M().to(device)
    a = torch.tensor([7, -7, 9, -9, 100], dtype=dtype, device=device)
    b = torch.tensor([2, 2, -4, -4, 7], dtype=dtype, device=device)
    ep = torch.export.export(mod, (a, b))

    # True division promotes integers to the default float dtype.
    assert _output_dtypes(ep) == [dtype, dtype, dtype, torch.float32]
    a2 = torch.tensor([13, -13, 5, 0, -1], dtype=dtype, device=device)
    b2 = torch.tensor([3, 3, -3, 5, 2], dtype=dtype, device=device)
    for out, ref in zip(ep.module()(a2, b2), mod(a2, b2)):
        _assert_same(out, ref)


def test_uint8_wraparound_and_shifts(device):
    class M(torch.nn.Module):
        def forward(self, x, y):
            return x + y, x << 1, x >> 3, x & y

    mod = M().to(device)
    x = torch.tensor([200, 10, 255, 0], dtype=torch.uint8, device=device)
    y = torch.tensor([100, 5, 1, 0], dtype=torch.uint8, device=device)
    ep = export(mod, (x, y))

    assert _output_dtypes(ep) == [torch.uint8] * 4
    out = ep.module()(x, y)
    assert out[0].tolist() == [44, 15, 0, 0]  # modular arithmetic, like eager
    for a, b in zip(out, mod(x, y)):
        _assert_same(a, b)


def test_bool_logic_and_masking(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, mask):
            keep = mask & (x > 0)
            return keep, x.masked_fill(~keep, -1.0), keep.any(), keep.sum()

    mod = M().to(device)
    x = torch.randn(8, device=device)
    mask = torch.rand(8, device=device) > 0.3
    ep = torch.export.export(mod, (x, mask))

    assert _output_dtypes(ep) == [torch.bool, torch.float32, torch.bool, torch.int64]
    x2 = torch.randn(8, device=device)
    m2 = torch.rand(8, device=device) > 0.5
    for a, b in zip(ep.module()(x2, m2), mod(x2, m2)):
        _assert_same(a, b)


PROMOTION_CASES = [
    (torch.int32, torch.int64),
    (torch.uint8, torch.int8),
    (torch.bfloat16, torch.float16),
    (torch.int32, torch.float16),
    (torch.bool, torch.uint8),
    (torch.float32, torch.complex64),
]


@pytest.mark.parametrize("lhs,rhs", PROMOTION_CASES, ids=lambda d: str(d).replace("torch.", ""))
def test_binary_type_promotion(device, lhs, rhs):
    class M(torch.nn.Module):
        def forward(self, a, b):
            return a + b, a * b

    def make(dt):
        if dt.is_complex:
            return torch.randn(4, dtype=dt, device=device)
        if dt.is_floating_point:
            return torch.randn(4, device=device).to(dt)
        if dt == torch.bool:
            return torch.tensor([True, False, True, True], device=device)
        return torch.arange(1, 5, device=device).to(dt)

    torch.manual_seed(0)
    mod = M().to(device)
    a, b = make(lhs), make(rhs)
    ep = export(mod, (a, b))

    expected_dtype = torch.promote_types(lhs, rhs)
    assert _output_dtypes(ep) == [expected_dtype, expected_dtype]
    for out, ref in zip(ep.module()(a, b), mod(a, b)):
        _assert_same(out, ref)


def test_python_scalar_and_zero_dim_promotion(device):
    class M(torch.nn.Module):
        def forward(self, i32, f16, f64_scalar_tensor):
            return i32 * 2.5, f16 + f64_scalar_tensor, i32 + True, f16 * 3

    mod = M().to(device)
    i32 = torch.arange(4, dtype=torch.int32, device=device)
    f16 = torch.randn(4, device=device).half()
    zero_dim = torch.tensor(1.5, dtype=torch.float64, device=device)
    ep = torch.export.export(mod, (i32, f16, zero_dim))

    # python float -> default dtype; 0-dim tensors do not promote same-category tensors.
    assert _output_dtypes(ep) == [torch.float32, torch.float16, torch.int32, torch.float16]
    for out, ref in zip(ep.module()(i32, f16, zero_dim), mod(i32, f16, zero_dim)):
        _assert_same(out, ref)


def test_reductions_widen_integer_dtypes(device):
    class M(torch.nn.Module):
        def forward(self, x, flags):
            return x.sum(), x.cumsum(0), flags.sum(), x.prod(dtype=torch.int32)

    mod = M().to(device)
    x = torch.tensor([1, 2, 3, 4], dtype=torch.int32, device=device)
    flags = torch.tensor([True, False, True], device=device)
    ep = export(mod, (x, flags))

    assert _output_dtypes(ep) == [torch.int64, torch.int64, torch.int64, torch.int32]
    for out, ref in zip(ep.module()(x, flags), mod(x, flags)):
        _assert_same(out, ref)


def test_factory_functions_inside_forward_use_expected_dtypes(device):
    class M(torch.nn.Module):
        def forward(self, x):
            n = x.shape[0]
            idx = torch.arange(n, device=x.device)
            ones = torch.ones(n, device=x.device)
            half = torch.zeros(n, device=x.device, dtype=torch.float16)
            return idx, ones + x, half

    mod = M().to(device)
    n = Dim("n", min=2, max=32)
    x = torch.randn(5, device=device, dtype=torch.float64)
    ep = torch.export.export(mod, (x,), dynamic_shapes={"x": {0: n}})

    assert _output_dtypes(ep) == [torch.int64, torch.float64, torch.float16]
    for size in (2, 5, 9):
        xs = torch.randn(size, device=device, dtype=torch.float64)
        for out, ref in zip(ep.module()(xs), mod(xs)):
            _assert_same(out, ref)


def test_mixed_precision_params_and_casts(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4).to(torch.bfloat16)
            self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

        def forward(self, x):
            self.steps.add_(1)
            y = self.lin(x.to(torch.bfloat16))
            return y.float() * self.steps, y

    eager = M().to(device)
    exported_src = M().to(device)
    exported_src.load_state_dict(eager.state_dict())
    ep = export(exported_src, (torch.randn(2, 4, device=device),))

    assert ep.state_dict["steps"].dtype == torch.int64
    assert ep.state_dict["lin.weight"].dtype == torch.bfloat16
    assert _output_dtypes(ep) == [torch.float32, torch.bfloat16]

    m = ep.module()
    for _ in range(2):
        x = torch.randn(2, 4, device=device)
        for out, ref in zip(m(x), eager(x)):
            _assert_same(out, ref)
    assert m.steps.dtype == torch.int64 and m.steps.item() == eager.steps.item() == 2


def test_explicit_dtype_conversion_chain(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            as_int = (x * 100).to(torch.int32)
            as_long = as_int.long() * 3
            return as_int, as_long, as_long.double() / 7, as_int.to(torch.bool)

    mod = M().to(device)
    x = torch.randn(6, device=device)
    ep = torch.export.export(mod, (x,))

    assert _output_dtypes(ep) == [torch.int32, torch.int64, torch.float64, torch.bool]
    x2 = torch.randn(6, device=device)
    for out, ref in zip(ep.module()(x2), mod(x2)):
        _assert_same(out, ref)
