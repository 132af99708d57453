"""token_entropy / token_entropy_and_logprob / nonfinite_rows against float64 NumPy/SciPy references."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax, logsumexp, softmax
from scipy.stats import entropy as scipy_entropy

from entropymon.errors import InputError
from entropymon.metrics.entropy import nonfinite_rows, token_entropy, token_entropy_and_logprob


def reference_entropy(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """Entropy in nats from the float64 values of the (possibly bf16) logits, via SciPy."""
    z = logits.double().numpy() / temperature
    return scipy_entropy(softmax(z, axis=-1), axis=-1)


def reference_logprob(logits, token_ids, temperature=1.0):
    z = logits.double().numpy() / temperature
    return np.take_along_axis(log_softmax(z, axis=-1), token_ids.numpy()[..., None], -1)[..., 0]


def random_logits(shape, dtype=torch.float32, scale=3.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.parametrize("shape", [(3, 5, 50), (7, 33), (41,)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 2.5])
def test_entropy_matches_scipy_for_dtypes_shapes_and_temperatures(shape, dtype, temperature):
    logits = random_logits(shape, dtype)
    entropy = token_entropy(logits, temperature=temperature)
    assert entropy.dtype == torch.float32 and entropy.shape == logits.shape[:-1]
    np.testing.assert_allclose(entropy.numpy(), reference_entropy(logits, temperature), atol=2e-5, rtol=1e-5)


def test_entropy_of_extreme_logits_is_exact():
    # +-1e4 logits overflow a naive float32 softmax; the shifted pass keeps them exact
    logits = random_logits((6, 200), scale=1.0, seed=1) * 1e4
    logits = logits.clamp(-1e4, 1e4)
    logits[:, :3] = 1.5e4  # a three-way tie 5000 nats above the rest: entropy log 3
    np.testing.assert_allclose(token_entropy(logits).numpy(), reference_entropy(logits), atol=1e-5)
    np.testing.assert_allclose(token_entropy(logits).numpy(), math.log(3), atol=1e-5)
    np.testing.assert_allclose(token_entropy(logits.bfloat16(), temperature=3e3).numpy(),
                               reference_entropy(logits.bfloat16(), 3e3), atol=2e-5)


def test_entropy_of_uniform_logits_is_log_vocab():
    for vocab in (1, 2, 1000, 32000):
        logits = torch.full((2, vocab), 7.25)
        np.testing.assert_allclose(token_entropy(logits).numpy(), math.log(vocab), rtol=1e-6, atol=1e-7)


def test_entropy_of_one_hot_logits_is_zero():
    logits = torch.zeros(4, 500)
    logits[torch.arange(4), torch.tensor([0, 17, 255, 499])] = 200.0
    entropy = token_entropy(logits)
    # the true value is 499 * 200 * e^-200 ~ 1e-82; s is floored at -80 before exp (S_FLOOR), which
    # leaves at most 499 * 80 * e^-80 ~ 7e-31 nats, and rounding never makes it negative
    assert torch.all(entropy >= 0.0) and torch.all(entropy < 1e-28)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**31 - 1), st.floats(0.05, 20.0), st.floats(-50, 50))
def test_entropy_lies_between_zero_and_log_vocab_and_ignores_shifts(vocab, seed, scale, shift):
    logits = random_logits((5, vocab), scale=scale, seed=seed)
    entropy = token_entropy(logits)
    assert torch.all(entropy >= 0) and torch.all(entropy <= math.log(vocab) + 1e-5)
    shifted = token_entropy(logits + shift)
    np.testing.assert_allclose(shifted.numpy(), entropy.numpy(), atol=2e-5 * (1 + abs(shift) / 10))


@pytest.mark.parametrize("scratch_bytes", [1, 4096, 10**9])
def test_chunking_and_padding_do_not_change_the_result(scratch_bytes):
    logits = random_logits((4, 9, 64), seed=2)
    mask = torch.zeros(4, 9, dtype=torch.bool)
    mask[0] = True  # a fully valid sequence
    mask[1, :2] = True  # mostly padding: the gathered path
    mask[2, :7] = True
    token_ids = torch.randint(0, 64, (4, 9), generator=torch.Generator().manual_seed(3))
    token_ids[~mask] = -100  # padding ids are ignored at masked positions
    entropy, logprob = token_entropy_and_logprob(logits, token_ids, 1.3, mask, scratch_bytes=scratch_bytes)
    valid = mask.numpy()
    safe_ids = token_ids.clamp(min=0)
    np.testing.assert_allclose(entropy.numpy(), np.where(valid, reference_entropy(logits, 1.3), 0.0), atol=2e-5)
    np.testing.assert_allclose(logprob.numpy(), np.where(valid, reference_logprob(logits, safe_ids, 1.3), 0.0), atol=2e-5)


def test_logprob_of_sampled_tokens_matches_log_softmax_in_bf16():
    logits = random_logits((2, 16, 300), torch.bfloat16, scale=5.0, seed=4)
    token_ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(5))
    entropy, logprob = token_entropy_and_logprob(logits, token_ids, temperature=0.8)
    np.testing.assert_allclose(logprob.numpy(), reference_logprob(logits, token_ids, 0.8), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(entropy.numpy(), reference_entropy(logits, 0.8), atol=2e-5)
    np.testing.assert_allclose(logsumexp(log_softmax(logits.double().numpy() / 0.8, -1), -1), 0.0, atol=1e-12)


def test_mask_as_zero_one_integers_equals_bool_mask():
    logits = random_logits((3, 4, 20), seed=6)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    assert torch.equal(token_entropy(logits, mask=mask), token_entropy(logits, mask=mask.bool()))
    assert torch.all(token_entropy(logits, mask=mask)[mask == 0] == 0)


def test_no_autograd_graph_is_built():
    logits = random_logits((2, 3, 10)).requires_grad_()
    entropy, logprob = token_entropy_and_logprob(logits, torch.zeros(2, 3, dtype=torch.long))
    assert not entropy.requires_grad and not logprob.requires_grad and entropy.grad_fn is None


def test_nan_or_plus_inf_at_a_valid_position_raises_with_the_count_but_masked_ones_are_ignored():
    logits = random_logits((2, 5, 8))
    logits[0, 1, 3] = float("nan")
    logits[1, 4, 0] = float("inf")
    logits[1, 2, 2] = -float("inf")  # a masked vocabulary slot: fine
    with pytest.raises(InputError, match=r"logits: .*2 of 10 positions without a distribution "
                                         r"\(1 with NaN, 1 with \+inf; first at index \(0, 1\)\)"):
        token_entropy(logits)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 1] = mask[1, 4] = False
    entropy = token_entropy(logits, mask=mask)
    expected = np.where(mask.numpy(), reference_entropy(torch.nan_to_num(logits, nan=0, posinf=0)), 0.0)
    np.testing.assert_allclose(entropy.numpy(), expected, atol=2e-5)


def test_nonfinite_rows_flags_nan_plus_inf_and_all_minus_inf_rows_only():
    logits = random_logits((3, 4, 6), seed=7)
    logits[0, 0, 5] = float("nan")
    logits[0, 2, 1] = float("inf")
    logits[2, 3, 0] = -float("inf")  # some -inf slots: a distribution, not bad
    logits[2, 1, :] = -float("inf")  # every slot -inf: no distribution
    logits[1, 1, :2] = 3e38  # finite values whose row sum overflows: not bad
    values = logits.numpy()
    expected = np.isnan(values).any(-1) | (values == np.inf).any(-1) | (values == -np.inf).all(-1)
    assert np.array_equal(nonfinite_rows(logits).numpy(), expected)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[2, 1] = False
    assert np.array_equal(nonfinite_rows(logits, mask).numpy(), expected & mask.numpy())
    assert not nonfinite_rows(torch.zeros(2, 3, dtype=torch.long)).any()


@pytest.mark.parametrize("call, message", [
    (lambda: token_entropy(torch.zeros(3, 4, dtype=torch.long)), r"logits: expected a floating dtype.*torch.int64"),
    (lambda: token_entropy(torch.tensor(1.0)), r"logits: expected at least 1 dimensions.*shape \(\)"),
    (lambda: token_entropy(np.zeros((2, 3))), r"logits: expected a torch.Tensor, got ndarray"),
    (lambda: token_entropy(torch.zeros(2, 0)), r"logits: expected a vocabulary dimension"),
    (lambda: token_entropy(torch.zeros(0, 5)), r"logits: expected at least one position"),
    (lambda: token_entropy(torch.zeros(2, 3), temperature=0.0), r"temperature: expected a positive finite number, got 0.0"),
    (lambda: token_entropy(torch.zeros(2, 3), temperature=-1), r"temperature: .*got -1"),
    (lambda: token_entropy(torch.zeros(2, 3), temperature=float("inf")), r"temperature: .*got inf"),
    (lambda: token_entropy(torch.zeros(2, 3), temperature=True), r"temperature: .*got True"),
    (lambda: token_entropy(torch.zeros(2, 3), mask=torch.ones(3, dtype=torch.bool)),
     r"mask: expected shape \(2,\) \(logits.shape\[:-1\]\), got \(3,\)"),
    (lambda: token_entropy(torch.zeros(2, 3), mask=torch.tensor([0, 2])), r"mask: expected bool or only 0/1"),
    (lambda: token_entropy(torch.zeros(2, 3), mask=torch.zeros(2, dtype=torch.bool)), r"mask: expected at least one True"),
    (lambda: token_entropy_and_logprob(torch.zeros(3), torch.tensor(0)), r"logits: expected at least 2 dimensions"),
    (lambda: token_entropy_and_logprob(torch.zeros(2, 3), torch.zeros(2)), r"token_ids: expected an integer dtype"),
    (lambda: token_entropy_and_logprob(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long)),
     r"token_ids: expected shape \(2,\).*got \(3,\)"),
    (lambda: token_entropy_and_logprob(torch.zeros(2, 3), torch.tensor([0, 3])),
     r"token_ids: expected values in \[0, 2\] \(V = 3\), got range \[0, 3\]"),
])
def test_bad_input_raises_input_error_naming_the_argument(call, message):
    with pytest.raises(InputError, match=message):
        call()
