"""Fast and Forgetful Memory (memory="ffm"): its scan, resets, initialisation, options and learning.

Sequence = steps, no leakage across a reset, save/load and ONNX parity run for ffm with the other
cores in tests/test_memory.py, tests/test_policy.py, tests/test_safe_format.py and tests/test_export.py.
"""

import math

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from recurrent_rl import RecurrentPPO
from recurrent_rl.nets.ffm import FORGOTTEN_AT, FastForgetfulMemory, decay_scan
from recurrent_rl.nets.memory import MemoryCore


def sequential(layer, u, keep, h0_re, h0_im):
    """The recurrence stepped through time in complex arithmetic: the reference for the scan."""
    g_re, g_im = layer.gamma_power(th.ones(1))
    gamma = th.complex(g_re[0], g_im[0]).to(th.complex128)  # (m, c)
    h = th.complex(h0_re, h0_im).to(th.complex128)
    out = []
    for t in range(u.shape[0]):
        h = gamma * h * keep[t].view(-1, 1, 1) + u[t].unsqueeze(-1)
        out.append(h)
    return th.stack(out)


@pytest.mark.parametrize("T", [1, 2, 7, 64, 300])
def test_the_scan_equals_the_complex_recurrence(T):
    th.manual_seed(0)
    memory = FastForgetfulMemory("ffm", 3, 8, memory_size=5, context_size=3).double()
    layer = memory.layers[0]
    B = 4
    u = th.randn(T, B, 5, dtype=th.double)
    keep = (th.rand(T, B) > 0.05).double()
    h0_re, h0_im = th.randn(B, 5, 3, dtype=th.double), th.randn(B, 5, 3, dtype=th.double)
    re, im = decay_scan(layer, u, keep, h0_re, h0_im)
    reference = sequential(layer, u, keep, h0_re, h0_im)
    th.testing.assert_close(re, reference.real, atol=1e-10, rtol=1e-10)
    th.testing.assert_close(im, reference.imag, atol=1e-10, rtol=1e-10)


def test_no_gradient_crosses_an_episode_start():
    th.manual_seed(1)
    core = MemoryCore("ffm", 4, 8, num_layers=2)
    T, B = 20, 3
    x = th.randn(T, B, 4, requires_grad=True)
    state = tuple(th.randn(s.shape, requires_grad=True) for s in core.initial_state(B))
    starts = th.zeros(T, B)
    starts[9, 1] = 1.0
    out, final = core(x, state, starts)
    grad_x, grad_state = th.autograd.grad(out[9:, 1].sum() + final[0][:, 1].sum(), [x, state[0]], retain_graph=True)
    assert th.count_nonzero(grad_x[:9, 1]) == 0 and th.count_nonzero(grad_state[:, 1]) == 0
    assert th.count_nonzero(grad_x[9:, 1]) > 0
    # the other columns still reach back to their incoming state
    (grad_other,) = th.autograd.grad(out[-1, 0].sum(), [state[0]])
    assert th.count_nonzero(grad_other[:, 0]) > 0


def test_initial_horizons_and_turns_span_the_periods():
    memory = FastForgetfulMemory("ffm", 3, 16, memory_size=8, context_size=4, min_period=2, max_period=512)
    layer = memory.layers[0]
    horizons = np.geomspace(2, 512, 8)
    for j, p in enumerate(horizons):
        g_re, g_im = layer.gamma_power(th.tensor([p]))
        magnitude = th.sqrt(g_re[0, j] ** 2 + g_im[0, j] ** 2)  # (c,)
        th.testing.assert_close(magnitude, th.full((4,), FORGOTTEN_AT), atol=1e-6, rtol=1e-4)
    periods = np.geomspace(2, 512, 4)
    th.testing.assert_close(layer.omega.detach(), th.tensor(2 * math.pi / periods, dtype=th.float32))
    # a step multiplies the trace by gamma: magnitude below 1, turned by omega
    g_re, g_im = layer.gamma_power(th.ones(1))
    angle = th.atan2(g_im[0, 0], g_re[0, 0])
    th.testing.assert_close(th.remainder(angle, 2 * math.pi), th.remainder(layer.omega.detach(), 2 * math.pi))


def test_the_state_is_fixed_size_real_and_parts():
    core = MemoryCore("ffm", 3, 12, num_layers=2, memory_kwargs=dict(memory_size=5, context_size=2))
    assert core.state_shapes(7) == [(2, 7, 20)]
    x, starts = th.randn(50, 7, 3), th.zeros(50, 7)
    _, final = core(x, core.initial_state(7), starts)
    assert final[0].shape == (2, 7, 20) and final[0].dtype == th.float32


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="ffm has no gate that keeps its state"):
        MemoryCore("ffm", 3, 4, gate_bias=1.0)
    with pytest.raises(ValueError, match="memory_size must be a positive integer"):
        MemoryCore("ffm", 3, 4, memory_kwargs={"memory_size": 0})
    with pytest.raises(ValueError, match="max_period=4.0 is below min_period=8"):
        MemoryCore("ffm", 3, 4, memory_kwargs={"min_period": 8, "max_period": 4.0})
    with pytest.raises(ValueError, match="min_period must be a number of steps >= 1"):
        MemoryCore("ffm", 3, 4, memory_kwargs={"min_period": 0.5})
    with pytest.raises(ValueError, match=r"takes no memory_kwargs \['memory_length'\]"):
        MemoryCore("ffm", 3, 4, memory_kwargs={"memory_length": 8})


FFM_SETTINGS = dict(
    n_steps=128,
    batch_size=512,
    n_epochs=10,
    learning_rate=lambda progress: 1e-3 * progress,
    gamma=0.9,
    gae_lambda=0.95,
    ent_coef=0.01,
)
HEADS = dict(ortho_init=False, activation_fn=th.nn.ReLU, net_arch=dict(pi=[64], vf=[64]))
# remember the first of 64 symbols: 64 is perfect, 8.875 the best a memoryless policy can expect.
# 200 evaluation episodes: a policy that answers one fixed symbol scores 64 or 1 per episode, so
# its mean over 200 episodes has a standard deviation of about 1.5
TASK, BUDGET, EPISODES = "pomdp/RepeatFirst-Medium-v0", 40_000, 200


@pytest.mark.slow
def test_ffm_learns_a_64_step_delay():
    """Two FFM layers of 64 units; measured at this budget on a 2-core CPU (about 25 s each), over
    16 episodes: 56.1, 57.8 and 62.4 of 64 (seeds 0-2)."""
    env = make_vec_env(TASK, n_envs=8, seed=0)
    policy_kwargs = dict(memory="ffm", num_layers=2, hidden_size=64, **HEADS)
    model = RecurrentPPO("MlpGruPolicy", env, seed=0, policy_kwargs=policy_kwargs, **FFM_SETTINGS)
    model.learn(BUDGET)
    mean, _ = evaluate_policy(
        model, make_vec_env(TASK, n_envs=8, seed=100), n_eval_episodes=EPISODES, deterministic=True
    )
    print("ffm RepeatFirst-Medium return", mean)
    assert mean >= 40, mean


@pytest.mark.slow
def test_a_memoryless_policy_cannot_at_the_same_budget():
    env = make_vec_env(TASK, n_envs=8, seed=0)
    mlp = PPO("MlpPolicy", env, seed=0, policy_kwargs=HEADS, **FFM_SETTINGS)
    mlp.learn(BUDGET)
    mean, _ = evaluate_policy(mlp, make_vec_env(TASK, n_envs=8, seed=100), n_eval_episodes=EPISODES, deterministic=True)
    print("MLP RepeatFirst-Medium return", mean)
    assert mean <= 15, mean
