"""torch.export on standard torch.nn layers.

Covers: Linear, Conv1d/Conv2d (stride, padding, dilation, groups),
BatchNorm in eval mode, LayerNorm, GroupNorm, MultiheadAttention,
F.scaled_dot_product_attention, Embedding, EmbeddingBag, RNNCell / LSTMCell /
GRUCell, activation modules, pooling layers, Dropout in eval mode and a small
TransformerEncoderLayer. Each test compares the exported module with eager on
the export inputs and on fresh inputs, and checks which state the program
lifted (parameters / buffers) where that is part of the layer's contract.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.export import export


def _check(mod, args, fresh_args=None, rtol=None, atol=None):
    """Export `mod`, compare with eager on `args` and `fresh_args`."""
    ep = torch.export.export(mod, args)
    gm = ep.module()
    tol = {} if rtol is None else {"rtol": rtol, "atol": atol}
    torch.testing.assert_close(gm(*args), mod(*args), **tol)
    if fresh_args is not None:
        torch.testing.assert_close(gm(*fresh_args), mod(*fresh_args), **tol)
    return ep


def _expect_state(ep, mod):
    """The program lifts the module's parameters under their FQNs.

    Every parameter of these layers is used, so all must be lifted. Buffers
    that forward never reads (e.g. BatchNorm's num_batches_tracked in eval)
    may be dropped by strict export, so for buffers only require a subset.
    """
    sig = ep.graph_signature
    assert set(sig.parameters) == {n for n, _ in mod.named_parameters()}
    assert set(sig.buffers) <= {n for n, _ in mod.named_buffers()}
    for name in sig.parameters:
        torch.testing.assert_close(ep.state_dict[name], mod.get_parameter(name).detach())


# --------------------------------------------------------------------------
# Linear / Conv
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_linear(device, bias):
    torch.manual_seed(0)
    mod = torch.nn.Linear(6, 4, bias=bias).to(device)
    x = torch.randn(3, 6, device=device)

    ep = _check(mod, (x,), (torch.randn(3, 6, device=device),))

    _expect_state(ep, mod)
    assert ("bias" in ep.graph_signature.parameters) is bias


def test_linear_on_3d_input(device):
    torch.manual_seed(1)
    mod = torch.nn.Linear(5, 2).to(device)
    x = torch.randn(2, 3, 5, device=device)
    ep = _check(mod, (x,), (torch.randn(2, 3, 5, device=device),))
    assert ep.module()(x).shape == (2, 3, 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="default"),
        pytest.param({"stride": 2, "padding": 1}, id="stride_padding"),
        pytest.param({"dilation": 2, "padding": "same"}, id="dilation_same"),
        pytest.param({"groups": 2, "bias": False}, id="groups_no_bias"),
    ],
)
def test_conv1d(device, kwargs):
    torch.manual_seed(2)
    mod = torch.nn.Conv1d(4, 6, kernel_size=3, **kwargs).to(device)
    x = torch.randn(2, 4, 11, device=device)

    ep = _check(mod, (x,), (torch.randn(2, 4, 11, device=device),))

    _expect_state(ep, mod)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="default"),
        pytest.param({"stride": (2, 1), "padding": (1, 2)}, id="asymmetric"),
        pytest.param({"groups": 3}, id="depthwise"),
        pytest.param({"padding": 1, "padding_mode": "reflect"}, id="reflect_pad"),
    ],
)
def test_conv2d(device, kwargs):
    torch.manual_seed(3)
    mod = torch.nn.Conv2d(3, 6, kernel_size=3, **kwargs).to(device)
    x = torch.randn(2, 3, 8, 7, device=device)

    ep = _check(mod, (x,), (torch.randn(2, 3, 8, 7, device=device),))

    _expect_state(ep, mod)


def test_conv_transpose2d(device):
    torch.manual_seed(4)
    mod = torch.nn.ConvTranspose2d(2, 3, kernel_size=2, stride=2).to(device)
    x = torch.randn(1, 2, 4, 4, device=device)
    ep = _check(mod, (x,), (torch.randn(1, 2, 4, 4, device=device),))
    assert ep.module()(x).shape == (1, 3, 8, 8)


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,shape",
    [
        pytest.param(torch.nn.BatchNorm1d, (4, 3, 5), id="bn1d"),
        pytest.param(torch.nn.BatchNorm2d, (4, 3, 5, 5), id="bn2d"),
    ],
)
def test_batchnorm_eval_uses_running_stats(device, cls, shape):
    torch.manual_seed(5)
    mod = cls(3).to(device)
    with torch.no_grad():
        mod.running_mean.uniform_(-1, 1)
        mod.running_var.uniform_(0.5, 2)
        mod.weight.uniform_(0.5, 1.5)
        mod.bias.uniform_(-0.5, 0.5)
    mod.eval()
    x = torch.randn(*shape, device=device)
    running_mean_before = mod.running_mean.clone()

    ep = _check(mod, (x,), (torch.randn(*shape, device=device),))

    _expect_state(ep, mod)
    assert {"running_mean", "running_var"} <= set(ep.graph_signature.buffers)
    # Inference must not touch the running statistics.
    assert ep.graph_signature.buffers_to_mutate == {}
    gm = ep.module()
    gm(x)
    torch.testing.assert_close(gm.running_mean, running_mean_before)
    # Running stats, not batch stats, are used.
    view = (1, 3) + (1,) * (len(shape) - 2)
    expected = (x - mod.running_mean.view(view)) / torch.sqrt(mod.running_var.view(view) + mod.eps)
    expected = expected * mod.weight.detach().view(view) + mod.bias.detach().view(view)
    torch.testing.assert_close(gm(x), expected)


def test_batchnorm_without_tracking_stats_in_eval(device):
    torch.manual_seed(6)
    mod = torch.nn.BatchNorm1d(3, track_running_stats=False).to(device).eval()
    x = torch.randn(5, 3, device=device)
    ep = _check(mod, (x,), (torch.randn(5, 3, device=device),))
    # No running statistics exist, so nothing is lifted as a buffer.
    assert ep.graph_signature.buffers == ()
    # Batch statistics are used: output is normalised per feature.
    out = ep.module()(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(3, device=device), atol=1e-5, rtol=0)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
def test_layer_norm(device, affine):
    torch.manual_seed(7)
    mod = torch.nn.LayerNorm([4, 5], elementwise_affine=affine).to(device)
    if affine:
        with torch.no_grad():
            mod.weight.normal_()
            mod.bias.normal_()
    x = torch.randn(3, 4, 5, device=device)

    ep = _check(mod, (x,), (torch.randn(3, 4, 5, device=device),))

    _expect_state(ep, mod)
    assert len(ep.graph_signature.parameters) == (2 if affine else 0)


def test_group_norm(device):
    torch.manual_seed(8)
    mod = torch.nn.GroupNorm(num_groups=2, num_channels=6).to(device)
    with torch.no_grad():
        mod.weight.normal_()
    x = torch.randn(3, 6, 4, 4, device=device)
    ep = _check(mod, (x,), (torch.randn(3, 6, 4, 4, device=device),))
    _expect_state(ep, mod)


# --------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
def test_multihead_self_attention(device, batch_first):
    torch.manual_seed(9)
    mod = torch.nn.MultiheadAttention(8, num_heads=2, batch_first=batch_first).to(device).eval()

    class SelfAttn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mod

        def forward(self, x):
            out, weights = self.attn(x, x, x)
            return out, weights

    wrapper = SelfAttn()
    shape = (2, 5, 8) if batch_first else (5, 2, 8)
    x = torch.randn(*shape, device=device)

    ep = _check(wrapper, (x,), (torch.randn(*shape, device=device),), rtol=1e-4, atol=1e-5)

    out, weights = ep.module()(x)
    assert out.shape == shape
    assert weights.shape == (2, 5, 5)  # averaged over heads
    assert {"attn.in_proj_weight", "attn.out_proj.weight"} <= set(ep.graph_signature.parameters)


def test_multihead_cross_attention_with_masks(device):
    torch.manual_seed(10)
    mod = torch.nn.MultiheadAttention(8, num_heads=4, kdim=6, vdim=5, batch_first=True).to(device).eval()

    class CrossAttn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mod

        def forward(self, q, k, v, key_padding_mask):
            out, _ = self.attn(q, k, v, key_padding_mask=key_padding_mask, need_weights=False)
            return out

    wrapper = CrossAttn()
    q = torch.randn(2, 3, 8, device=device)
    k = torch.randn(2, 4, 6, device=device)
    v = torch.randn(2, 4, 5, device=device)
    mask = torch.tensor([[False, False, True, True], [False, False, False, True]], device=device)

    ep = _check(wrapper, (q, k, v, mask), rtol=1e-4, atol=1e-5)

    # Masked keys must not influence the result: change them and compare.
    k2, v2 = k.clone(), v.clone()
    k2[0, 2:] = 100.0
    v2[0, 2:] = -100.0
    torch.testing.assert_close(ep.module()(q, k2, v2, mask), ep.module()(q, k, v, mask), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "is_causal,use_mask",
    [
        pytest.param(False, False, id="plain"),
        pytest.param(True, False, id="causal"),
        pytest.param(False, True, id="additive_mask"),
    ],
)
def test_scaled_dot_product_attention(device, is_causal, use_mask):
    torch.manual_seed(11)

    class SDPA(torch.nn.Module):
        def forward(self, q, k, v, mask):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

    q = torch.randn(2, 2, 4, 8, device=device)
    k = torch.randn(2, 2, 4, 8, device=device)
    v = torch.randn(2, 2, 4, 8, device=device)
    mask = torch.randn(4, 4, device=device) if use_mask else None
    mod = SDPA()

    ep = export(mod, (q, k, v, mask))

    torch.testing.assert_close(ep.module()(q, k, v, mask), mod(q, k, v, mask), rtol=1e-4, atol=1e-5)
    # Reference implementation written out by hand.
    scores = q @ k.transpose(-2, -1) / 8**0.5
    if is_causal:
        scores = scores.masked_fill(torch.ones(4, 4, dtype=torch.bool, device=device).triu(1), float("-inf"))
    if use_mask:
        scores = scores + mask
    ref = scores.softmax(-1) @ v
    # Fused kernels (CUDA) accumulate differently from the hand-written math.
    torch.testing.assert_close(ep.module()(q, k, v, mask), ref, rtol=1e-4, atol=1e-4)


def test_transformer_encoder_layer_eval(device):
    torch.manual_seed(12)
    mod = (
        torch.nn.TransformerEncoderLayer(
            d_model=8, nhead=2, dim_feedforward=16, dropout=0.1, batch_first=True
        )
        .to(device)
        .eval()
    )
    x = torch.randn(2, 5, 8, device=device)

    ep = _check(mod, (x,), (torch.randn(2, 5, 8, device=device),), rtol=1e-4, atol=1e-5)

    _expect_state(ep, mod)


# --------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------


@pytest.mark.parametrize("padding_idx", [None, 0], ids=["no_padding", "padding_idx0"])
def test_embedding(device, padding_idx):
    torch.manual_seed(13)
    mod = torch.nn.Embedding(10, 4, padding_idx=padding_idx).to(device)
    idx = torch.tensor([[0, 3, 9], [1, 0, 2]], device=device)

    ep = _check(mod, (idx,), (torch.tensor([[5, 5, 5], [0, 8, 7]], device=device),))

    assert ep.graph_signature.parameters == ("weight",)
    out = ep.module()(idx)
    if padding_idx is not None:
        torch.testing.assert_close(out[0, 0], torch.zeros(4, device=device))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_with_offsets(device, mode):
    torch.manual_seed(14)
    mod = torch.nn.EmbeddingBag(10, 3, mode=mode).to(device)
    idx = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9], device=device)
    offsets = torch.tensor([0, 4], device=device)

    ep = _check(mod, (idx, offsets))

    out = ep.module()(idx, offsets)
    assert out.shape == (2, 3)
    w = mod.weight.detach()
    reduce = {"sum": lambda t: t.sum(0), "mean": lambda t: t.mean(0), "max": lambda t: t.max(0).values}[mode]
    expected = torch.stack([reduce(w[idx[:4]]), reduce(w[idx[4:]])])
    torch.testing.assert_close(out, expected)
    # Same shapes, different indices and bag boundaries.
    idx2 = torch.tensor([0, 0, 1, 7, 8, 8, 6, 2], device=device)
    off2 = torch.tensor([0, 3], device=device)
    torch.testing.assert_close(ep.module()(idx2, off2), mod(idx2, off2))


def test_embedding_bag_2d_input_with_per_sample_weights(device):
    torch.manual_seed(15)
    mod = torch.nn.EmbeddingBag(8, 4, mode="sum").to(device)
    idx = torch.tensor([[1, 2, 3], [7, 7, 0]], device=device)
    psw = torch.rand(2, 3, device=device)

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = mod

        def forward(self, idx, psw):
            return self.bag(idx, per_sample_weights=psw)

    wrapper = Wrapper()
    ep = _check(
        wrapper,
        (idx, psw),
        (torch.tensor([[0, 1, 2], [3, 4, 5]], device=device), torch.rand(2, 3, device=device)),
    )
    expected = (mod.weight.detach()[idx] * psw.unsqueeze(-1)).sum(1)
    torch.testing.assert_close(ep.module()(idx, psw), expected)


# --------------------------------------------------------------------------
# Recurrent cells
# --------------------------------------------------------------------------


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell(device, nonlinearity):
    torch.manual_seed(16)
    mod = torch.nn.RNNCell(4, 6, nonlinearity=nonlinearity).to(device)
    x, h = torch.randn(3, 4, device=device), torch.randn(3, 6, device=device)
    ep = _check(mod, (x, h), (torch.randn(3, 4, device=device), torch.randn(3, 6, device=device)))
    _expect_state(ep, mod)


def test_lstm_cell(device):
    torch.manual_seed(17)
    mod = torch.nn.LSTMCell(4, 5).to(device)
    x = torch.randn(2, 4, device=device)
    state = (torch.randn(2, 5, device=device), torch.randn(2, 5, device=device))

    ep = export(mod, (x, state))

    h, c = ep.module()(x, state)
    h_ref, c_ref = mod(x, state)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)
    # The (h, c) tuple is flattened into two user inputs and two outputs.
    assert len(ep.graph_signature.user_inputs) == 3
    assert len(ep.graph_signature.user_outputs) == 2
    # Unrolling two steps with the exported cell matches eager unrolling.
    x2 = torch.randn(2, 4, device=device)
    torch.testing.assert_close(ep.module()(x2, (h, c)), mod(x2, (h_ref, c_ref)))


def test_gru_cell(device):
    torch.manual_seed(18)
    mod = torch.nn.GRUCell(3, 4, bias=False).to(device)
    x, h = torch.randn(5, 3, device=device), torch.randn(5, 4, device=device)
    ep = _check(mod, (x, h), (torch.randn(5, 3, device=device), torch.randn(5, 4, device=device)))
    assert set(ep.graph_signature.parameters) == {"weight_ih", "weight_hh"}


def test_rnn_cell_unrolled_over_sequence(device):
    torch.manual_seed(19)

    class Unrolled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = torch.nn.GRUCell(3, 4)

        def forward(self, seq):
            h = torch.zeros(seq.shape[1], 4, device=seq.device)
            outs = []
            for t in range(seq.shape[0]):
                h = self.cell(seq[t], h)
                outs.append(h)
            return torch.stack(outs)

    mod = Unrolled().to(device)
    seq = torch.randn(4, 2, 3, device=device)
    ep = _check(mod, (seq,), (torch.randn(4, 2, 3, device=device),))
    assert ep.module()(seq).shape == (4, 2, 4)


# --------------------------------------------------------------------------
# Activations, pooling, dropout
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "act",
    [
        pytest.param(lambda: torch.nn.ReLU(), id="relu"),
        pytest.param(lambda: torch.nn.GELU(approximate="tanh"), id="gelu_tanh"),
        pytest.param(lambda: torch.nn.GELU(), id="gelu_erf"),
        pytest.param(lambda: torch.nn.SiLU(), id="silu"),
        pytest.param(lambda: torch.nn.LeakyReLU(0.2), id="leaky_relu"),
        pytest.param(lambda: torch.nn.ELU(alpha=0.7), id="elu"),
        pytest.param(lambda: torch.nn.Hardswish(), id="hardswish"),
        pytest.param(lambda: torch.nn.Mish(), id="mish"),
        pytest.param(lambda: torch.nn.Softmax(dim=-1), id="softmax"),
        pytest.param(lambda: torch.nn.LogSoftmax(dim=0), id="log_softmax_dim0"),
        pytest.param(lambda: torch.nn.Hardtanh(-0.5, 0.5), id="hardtanh"),
    ],
)
def test_activation(device, act):
    torch.manual_seed(20)
    mod = act().to(device)
    x = torch.randn(4, 7, device=device) * 3
    ep = _check(mod, (x,), (torch.randn(4, 7, device=device) * 3,))
    assert ep.graph_signature.parameters == ()


def test_prelu_has_learnable_parameter(device):
    torch.manual_seed(21)
    mod = torch.nn.PReLU(num_parameters=3, init=0.1).to(device)
    x = torch.randn(2, 3, 4, device=device)
    ep = _check(mod, (x,))
    assert ep.graph_signature.parameters == ("weight",)
    gm = ep.module()
    with torch.no_grad():
        gm.weight.fill_(0.5)
    torch.testing.assert_close(gm(x), torch.where(x > 0, x, 0.5 * x))


@pytest.mark.parametrize(
    "pool,shape",
    [
        pytest.param(lambda: torch.nn.MaxPool1d(3, stride=2), (2, 3, 11), id="maxpool1d"),
        pytest.param(lambda: torch.nn.MaxPool2d(2, padding=1), (2, 3, 7, 6), id="maxpool2d_pad"),
        pytest.param(
            lambda: torch.nn.AvgPool2d(3, stride=1, count_include_pad=False, padding=1),
            (1, 2, 5, 5),
            id="avgpool2d",
        ),
        pytest.param(lambda: torch.nn.AdaptiveAvgPool2d((2, 3)), (2, 2, 7, 9), id="adaptive_avg2d"),
        pytest.param(lambda: torch.nn.AdaptiveMaxPool1d(4), (2, 3, 10), id="adaptive_max1d"),
    ],
)
def test_pooling(device, pool, shape):
    torch.manual_seed(22)
    mod = pool().to(device)
    x = torch.randn(*shape, device=device)
    _check(mod, (x,), (torch.randn(*shape, device=device),))


def test_maxpool_return_indices(device):
    torch.manual_seed(23)
    mod = torch.nn.MaxPool2d(2, return_indices=True).to(device)
    x = torch.randn(1, 2, 4, 4, device=device)

    ep = export(mod, (x,))

    out, idx = ep.module()(x)
    out_ref, idx_ref = mod(x)
    torch.testing.assert_close(out, out_ref)
    assert idx.dtype == torch.int64
    torch.testing.assert_close(idx, idx_ref)
    # The indices point at the maxima in the flattened spatial input.
    torch.testing.assert_close(x.flatten(2).gather(2, idx.flatten(2)), out.flatten(2))


@pytest.mark.parametrize(
    "drop",
    [
        pytest.param(lambda: torch.nn.Dropout(0.5), id="dropout"),
        pytest.param(lambda: torch.nn.Dropout2d(0.9), id="dropout2d"),
        pytest.param(lambda: torch.nn.AlphaDropout(0.5), id="alpha_dropout"),
    ],
)
def test_dropout_in_eval_is_identity(device, drop):
    torch.manual_seed(24)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.drop = drop()

        def forward(self, x):
            return self.drop(self.fc(x)[:, :, None, None]).flatten(1)  # 4-D for Dropout2d

    mod = Net().to(device).eval()
    x = torch.randn(3, 4, device=device)

    ep = _check(mod, (x,), (torch.randn(3, 4, device=device),))

    # Deterministic: independent of the RNG state, equal to the bare Linear.
    gm = ep.module()
    torch.manual_seed(123)
    a = gm(x)
    torch.manual_seed(456)
    b = gm(x)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, mod.fc(x))


def test_functional_dropout_with_training_false(device):
    class Net(torch.nn.Module):
        def forward(self, x):
            return F.dropout(x, p=0.99, training=False) * 2

    x = torch.randn(5, 5, device=device)
    _check(Net(), (x,), (torch.randn(5, 5, device=device),))
