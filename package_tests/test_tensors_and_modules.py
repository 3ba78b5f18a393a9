"""Tensors and nn.Modules inside a package, on the test's ``device``.

Tensor storages are written once per storage and restored on the device they
were saved from (or ``map_location``).  An interned nn.Module must reproduce
the original module's numerics.
"""
import io

import pytest
import torch
from torch import nn
from torch.package import PackageExporter

# PackageExporter itself still goes through TypedStorage when writing tensors.
pytestmark = pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning")


def _roundtrip(obj, *, intern=(), map_location=None):
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        for pattern in intern:
            exp.intern(pattern)
        exp.save_pickle("mtx_tensors", "obj.pkl", obj)
    buf.seek(0)
    imp = torch.package.PackageImporter(buf)
    return imp, imp.load_pickle("mtx_tensors", "obj.pkl", map_location=map_location)


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool]
)
def test_tensor_round_trip_dtypes(device, dtype):
    gen = torch.Generator().manual_seed(0)
    t = (torch.randn(3, 5, generator=gen) * 4).to(dtype).to(device)
    _, loaded = _roundtrip(t)
    assert loaded.dtype == dtype
    assert loaded.device == t.device
    torch.testing.assert_close(loaded, t, rtol=0, atol=0)


def test_float8_e4m3fn_round_trip_is_bit_exact(device):
    values = torch.tensor([0.0, -0.0, 1.0, -2.5, 0.015625, 448.0, -448.0, 3.1], device=device)
    t = values.to(torch.float8_e4m3fn)
    _, loaded = _roundtrip({"fp8": t})
    fp8 = loaded["fp8"]
    assert fp8.dtype == torch.float8_e4m3fn
    assert fp8.device == t.device
    assert torch.equal(fp8.view(torch.uint8), t.view(torch.uint8))
    torch.testing.assert_close(fp8.float(), t.float(), rtol=0, atol=0)


def test_bfloat16_values_keep_their_rounding(device):
    # Each value is exactly representable in bfloat16 (8 significant bits).
    exact = torch.tensor([1.0, 1.0078125, 3.140625, -65280.0], device=device)
    t = exact.to(torch.bfloat16)
    _, loaded = _roundtrip(t)
    torch.testing.assert_close(loaded.float(), exact, rtol=0, atol=0)


def test_views_share_storage_after_loading(device):
    base = torch.arange(12, dtype=torch.float32, device=device)
    view = base[2:8].view(2, 3)
    _, (base2, view2) = _roundtrip((base, view))
    assert view2.untyped_storage().data_ptr() == base2.untyped_storage().data_ptr()
    torch.testing.assert_close(view2, view)
    base2[3] = -1.0
    assert view2[0, 1].item() == -1.0


def test_non_contiguous_tensor_keeps_strides(device):
    t = torch.arange(24, dtype=torch.float32, device=device).reshape(4, 6).t()
    _, loaded = _roundtrip(t)
    assert loaded.stride() == t.stride()
    assert not loaded.is_contiguous()
    torch.testing.assert_close(loaded, t)


def test_map_location_moves_tensors_to_cpu(device):
    t = torch.linspace(-1, 1, 7, device=device)
    _, loaded = _roundtrip({"t": t}, map_location="cpu")
    assert loaded["t"].device == torch.device("cpu")
    torch.testing.assert_close(loaded["t"], t.cpu())


def test_parameter_and_requires_grad_survive(device):
    p = nn.Parameter(torch.ones(2, 2, device=device))
    frozen = torch.zeros(3, device=device)
    _, (p2, frozen2) = _roundtrip((p, frozen))
    assert isinstance(p2, nn.Parameter)
    assert p2.requires_grad
    assert not frozen2.requires_grad
    torch.testing.assert_close(p2.detach(), p.detach())


def test_plain_torch_module_needs_no_patterns(device):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).to(device).eval()
    imp, loaded = _roundtrip(model)
    assert type(loaded) is nn.Sequential
    # torch is externed implicitly, so none of its code is copied into the archive.
    assert not imp.file_structure().has_file("torch")
    x = torch.randn(5, 4, device=device)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_interned_model_round_trip_matches_original(device):
    from mtx_pkg_model.model import TinyNet, make_model

    model = make_model(seed=3, hidden=12).to(device).eval()
    imp, loaded = _roundtrip(model, intern=["mtx_pkg_model.**"])

    assert type(loaded).__name__ == "TinyNet"
    assert type(loaded) is not TinyNet
    assert type(loaded) is imp.import_module("mtx_pkg_model.model").TinyNet
    assert loaded.config.hidden == 12
    assert loaded.offset.device == model.offset.device

    original = model.state_dict()
    restored = loaded.state_dict()
    assert list(restored) == list(original)
    for key in original:
        torch.testing.assert_close(restored[key], original[key], rtol=0, atol=0)

    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(7)).to(device)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_loaded_model_gradients_match_the_original(device):
    from mtx_pkg_model.model import make_model

    model = make_model(seed=5).to(device)
    _, loaded = _roundtrip(model, intern=["mtx_pkg_model.**"])

    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(2)).to(device)
    target = torch.randn(8, 3, generator=torch.Generator().manual_seed(3)).to(device)
    for net in (model, loaded):
        nn.functional.mse_loss(net(x), target).backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.1 * p.grad

    named = dict(model.named_parameters())
    loaded_named = dict(loaded.named_parameters())
    assert list(loaded_named) == list(named)
    for name, p in named.items():
        torch.testing.assert_close(loaded_named[name].grad, p.grad)
        torch.testing.assert_close(loaded_named[name], p)


def test_model_source_and_weights_in_one_package(device):
    """A model loaded from the package can be rebuilt from its packaged code plus saved weights."""
    from mtx_pkg_model.model import make_model

    model = make_model(seed=11).to(device).eval()
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_model.**")
        exp.save_module("mtx_pkg_model.model")
        exp.save_pickle("mtx_tensors", "weights.pkl", model.state_dict())
    buf.seek(0)
    imp = torch.package.PackageImporter(buf)

    packaged = imp.import_module("mtx_pkg_model.model")
    rebuilt = packaged.TinyNet(packaged.ModelConfig()).to(device).eval()
    rebuilt.load_state_dict(imp.load_pickle("mtx_tensors", "weights.pkl"))
    x = torch.randn(3, 4, device=device)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensor_can_be_mapped_to_cpu_and_back():
    t = torch.arange(6.0, device="cuda")
    _, on_cpu = _roundtrip(t, map_location="cpu")
    assert on_cpu.device.type == "cpu"
    _, on_cuda = _roundtrip(on_cpu, map_location="cuda")
    assert on_cuda.device.type == "cuda"
    torch.testing.assert_close(on_cuda, t)
