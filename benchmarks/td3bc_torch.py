"""TD3+BC's reference implementation in PyTorch: one port, shared by ``offline_speed.py`` (updates/s)
and ``td3bc_reference.py`` (scores and updates/s on a dataset), and by the test that checks our update
against it (``tests/test_td3bc_reference.py``).

The algorithm of CORL's ``algorithms/offline/td3_bc.py`` (Tarasov et al.; itself Fujimoto & Gu's
``TD3_BC``), written from its description, with its hyperparameters (:data:`HPARAMS`):

- actor ``Linear(obs, 256) ReLU Linear(256, 256) ReLU Linear(256, act) Tanh`` times ``max_action``; two
  critics, each ``Linear(obs + act, 256) ReLU Linear(256, 256) ReLU Linear(256, 1)`` on ``cat(s, a)``,
  each with its own Adam (lr 3e-4; Adam is per parameter, so this equals one Adam over both); every
  layer PyTorch's ``nn.Linear`` default initialization; target copies of all three;
- states normalized with the dataset's mean and std + 1e-3 (observations and next observations);
  rewards as they are; ``done`` = the dataset's terminals (a timeout bootstraps);
- per call of :meth:`TorchTD3BC.train` (one critic update) a batch of 256 drawn uniformly with
  replacement; target y = r + 0.99 (1 - d) min_j Q'_j(s', clip(pi'(s') + clip(0.2 eps, -0.5, 0.5), -1, 1));
  critic loss ``mse(Q_1, y) + mse(Q_2, y)`` (the full squared error); every 2nd call, on that call's
  batch, the actor loss ``-lambda mean Q_1(s, pi(s)) + mse(pi(s), a)`` with lambda = 2.5 / mean |Q_1|
  (detached), then a Polyak step (tau 5e-3) of both critics' and the actor's targets.

:meth:`TorchTD3BC.load_flax` copies our (rejax) actor and stacked critics into the port, and
:meth:`TorchTD3BC.actor_flax` gives the port's actor back as our actor's parameters, so both agents can
start from the same weights and be scored by one evaluator.
"""
from __future__ import annotations

import copy

import numpy as np

HPARAMS = {"hidden": 256, "learning_rate": 3e-4, "batch_size": 256, "discount": 0.99, "tau": 5e-3,
           "policy_noise": 0.2, "noise_clip": 0.5, "policy_freq": 2, "alpha": 2.5, "state_eps": 1e-3}


class TorchTD3BC:
    """One TD3+BC learner on one dataset (``data``: a :class:`lossmooth.offline.datasets.Transitions`,
    or None to feed batches to :meth:`train` yourself). ``threads``: ``torch.set_num_threads`` (None:
    leave it); ``seed`` seeds the networks' initialization and the batch and noise draws."""

    def __init__(self, obs: int, act: int, data=None, seed: int = 0, threads: int | None = None,
                 hidden: int = HPARAMS["hidden"], batch_size: int = HPARAMS["batch_size"],
                 learning_rate: float = HPARAMS["learning_rate"], discount: float = HPARAMS["discount"],
                 tau: float = HPARAMS["tau"], policy_noise: float = HPARAMS["policy_noise"],
                 noise_clip: float = HPARAMS["noise_clip"], policy_freq: int = HPARAMS["policy_freq"],
                 alpha: float = HPARAMS["alpha"], max_action: float = 1.0):
        import torch
        import torch.nn as nn

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # nn.Linear's initialization draws from the global generator

        def mlp(i, o, tanh=False):
            layers = [nn.Linear(i, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, o)]
            return nn.Sequential(*layers, *([nn.Tanh()] if tanh else []))

        self.actor = mlp(obs, act, tanh=True)
        self.critic_1, self.critic_2 = mlp(obs + act, 1), mlp(obs + act, 1)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_1_target, self.critic_2_target = copy.deepcopy(self.critic_1), copy.deepcopy(self.critic_2)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=learning_rate)
        self.critic_1_opt = torch.optim.Adam(self.critic_1.parameters(), lr=learning_rate)
        self.critic_2_opt = torch.optim.Adam(self.critic_2.parameters(), lr=learning_rate)
        self.batch_size, self.discount, self.tau = batch_size, discount, tau
        self.policy_noise, self.noise_clip = policy_noise * max_action, noise_clip * max_action
        self.policy_freq, self.alpha, self.max_action = policy_freq, alpha, max_action
        self.total_it = 0
        if data is not None:
            self.set_data(data)

    # -- data ---------------------------------------------------------------------------------------

    def set_data(self, data, eps: float = HPARAMS["state_eps"]):
        """The dataset, states normalized with its mean and std + ``eps`` (as the reference does)."""
        torch = self.torch
        mean, std = data.observations.mean(0), data.observations.std(0) + eps
        self.state_mean, self.state_std = mean, std
        f32 = lambda x: torch.as_tensor(np.asarray(x, np.float32))  # noqa: E731
        self.S, self.S2 = f32((data.observations - mean) / std), f32((data.next_observations - mean) / std)
        self.A, self.R = f32(data.actions), f32(data.rewards)[:, None]
        self.D = f32(data.terminals)[:, None]
        self.n = len(data)

    def sample(self):
        ind = self.torch.randint(0, self.n, (self.batch_size,), generator=self.gen)
        return self.S[ind], self.A[ind], self.R[ind], self.S2[ind], self.D[ind]

    # -- the update -----------------------------------------------------------------------------------

    def q(self, critic, s, a):
        return critic(self.torch.cat([s, a], 1))

    def pi(self, actor, s):
        return self.max_action * actor(s)

    def train(self, batch=None, noise=None) -> dict:
        """One critic update on ``batch`` (s, a, r [B, 1], s', done [B, 1]; None: drawn from the data),
        with the target policy's noise before clipping ``noise`` (None: 0.2 N(0, 1) drawn here); the
        actor update and the targets' Polyak step every ``policy_freq``-th call."""
        torch = self.torch
        F = torch.nn.functional
        self.total_it += 1
        s, a, r, s2, d = self.sample() if batch is None else batch
        with torch.no_grad():
            if noise is None:
                noise = torch.randn(a.shape, generator=self.gen) * self.policy_noise
            noise = noise.clamp(-self.noise_clip, self.noise_clip)
            a2 = (self.pi(self.actor_target, s2) + noise).clamp(-self.max_action, self.max_action)
            tq = torch.min(self.q(self.critic_1_target, s2, a2), self.q(self.critic_2_target, s2, a2))
            y = r + (1 - d) * self.discount * tq
        c_loss = F.mse_loss(self.q(self.critic_1, s, a), y) + F.mse_loss(self.q(self.critic_2, s, a), y)
        self.critic_1_opt.zero_grad()
        self.critic_2_opt.zero_grad()
        c_loss.backward()
        self.critic_1_opt.step()
        self.critic_2_opt.step()
        out = {"critic_loss": c_loss}
        if self.total_it % self.policy_freq == 0:
            pi = self.pi(self.actor, s)
            q = self.q(self.critic_1, s, pi)
            lmbda = self.alpha / q.abs().mean().detach()
            a_loss = -lmbda * q.mean() + F.mse_loss(pi, a)
            self.actor_opt.zero_grad()
            a_loss.backward()
            self.actor_opt.step()
            with torch.no_grad():
                for net, tgt in ((self.critic_1, self.critic_1_target), (self.critic_2, self.critic_2_target),
                                 (self.actor, self.actor_target)):
                    for p, tp in zip(net.parameters(), tgt.parameters()):
                        tp.mul_(1 - self.tau).add_(self.tau * p)
            out["actor_loss"] = a_loss
        return out

    # -- weights shared with our (rejax) networks -------------------------------------------------------

    @staticmethod
    def _linears(net):
        return [m for m in net if hasattr(m, "weight")]

    def _load(self, net, params, i=None):
        """``params`` (flax Dense_0.. kernels [in, out]; critics stacked on a leading axis, take ``i``)."""
        torch = self.torch
        with torch.no_grad():
            for k, lin in enumerate(self._linears(net)):
                layer = params["params"][f"Dense_{k}"]
                w, b = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
                if i is not None:
                    w, b = w[i], b[i]
                lin.weight.copy_(torch.as_tensor(w.T.copy()))
                lin.bias.copy_(torch.as_tensor(b.copy()))

    def load_flax(self, actor_params, critic_params, actor_target=None, critic_target=None):
        """Our actor's and stacked twin critics' parameters (and their targets; None: copies) into
        the port, optimizer states fresh."""
        self._load(self.actor, actor_params)
        self._load(self.critic_1, critic_params, 0)
        self._load(self.critic_2, critic_params, 1)
        self._load(self.actor_target, actor_params if actor_target is None else actor_target)
        self._load(self.critic_1_target, critic_params if critic_target is None else critic_target, 0)
        self._load(self.critic_2_target, critic_params if critic_target is None else critic_target, 1)

    def _flax(self, net):
        return {f"Dense_{k}": {"kernel": lin.weight.detach().numpy().T.copy(), "bias": lin.bias.detach().numpy().copy()}
                for k, lin in enumerate(self._linears(net))}

    def actor_flax(self, target: bool = False) -> dict:
        """The (target) actor as our actor's parameters ``{"params": {"Dense_k": {kernel, bias}}}``."""
        return {"params": self._flax(self.actor_target if target else self.actor)}

    def critic_flax(self, target: bool = False) -> dict:
        """Both (target) critics as our stacked critics' parameters (leading axis 2)."""
        c1, c2 = (self.critic_1_target, self.critic_2_target) if target else (self.critic_1, self.critic_2)
        a, b = self._flax(c1), self._flax(c2)
        return {"params": {k: {n: np.stack([a[k][n], b[k][n]]) for n in a[k]} for k in a}}
