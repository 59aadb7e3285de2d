"""The S4 / S4D layer: a bank of ``d_model`` independent SSMs turned into a long convolution.

Each of the H = ``d_model`` input channels has its own continuous SSM ``x' = A x + B u``,
``y = C x + D u`` with N = ``d_state`` states, discretised with step Delta = exp(log_dt):

* ``mode='nplr'`` (S4): ``A = Lambda - P P^*`` in the eigenbasis of HiPPO's normal part (``init`` in
  'legs', 'legt', 'fout'), bilinear discretisation. Only N/2 eigenvalues are stored (conjugate pairs
  halved); the layer is the *real* N-state system whose other half is the complex conjugate. The
  kernel comes from the generating function at the roots of unity: a Cauchy kernel, the Woodbury
  correction for the rank-r term and an inverse FFT. ``C`` is stored as ``C~ = C (I - Abar^L)``
  (row-vector convention) for the current kernel length L, so the truncated generating function needs
  no matrix power.
* ``mode='diag'`` (S4D): ``A = diag(Lambda)`` (``init`` in 'legs', 'lin', 'inv', 'real'), ``zoh`` or
  ``bilinear``; the kernel is a Vandermonde product ``2 Re sum_n C_n Bbar_n Abar_n^l``.

See :meth:`S4.ssm_matrices` for the exact system a layer computes.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
from torch import nn

from . import hippo
from .kernels import (
    _DIAG_MAX_MODES,
    _NPLR_MAX_MODES,
    cauchy,
    diag_kernel,
    fft_conv,
    nplr_kernel,
    ssm_step,
    triton_available,
    vandermonde,
)

__all__ = ["S4", "SSMMatrices", "ssm_param_groups"]

_OPTIM_ATTR = "_s4_optim"


class SSMMatrices(NamedTuple):
    """Continuous-time system of an :class:`S4` layer (returned by :meth:`S4.ssm_matrices`).

    Fields (S = modes: ``d_state`` for mode='nplr', ``(d_state + 1) // 2`` for mode='diag'; complex dtype
    matching the layer's parameters, e.g. complex64 for float32):

    * ``A``  (H, S, S) complex: continuous state matrix (diagonal for 'diag').
    * ``B``  (H, S) complex.
    * ``C``  (C_out, H, S) complex, the *actual* output matrix (not the C~ parameter); C_out =
      ``channels`` (``2 * channels`` when bidirectional: the first ``channels`` rows are the causal
      kernels, the last ``channels`` the anti-causal ones).
    * ``D``  (channels, H) real skip term.
    * ``dt`` (H,) real step sizes Delta.
    * ``disc``: 'bilinear' or 'zoh'.
    * ``halved``: True if only one of each conjugate pair is stored.

    Discretisation: bilinear ``Abar = (I - dt/2 A)^-1 (I + dt/2 A)``, ``Bbar = (I - dt/2 A)^-1 dt B``;
    zoh ``Abar = exp(dt A)``, ``Bbar = A^-1 (exp(dt A) - I) B``. Then for every l < L
    ``kernel(L)[c, h, l] = f(C[c,h] @ Abar[h]^l @ Bbar[h])`` with ``f = 2 Re`` if ``halved`` else ``Re``
    (for 'nplr' the N x N system is the full real system written in the complex eigenbasis, so the
    imaginary part is zero up to rounding).
    """

    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor
    dt: torch.Tensor
    disc: str
    halved: bool

    def __getitem__(self, key):
        """Index by position (tuple) or by field name (``m['A']``, like a dict)."""
        if isinstance(key, str):
            return getattr(self, key)
        return tuple.__getitem__(self, key)

    def keys(self):
        """Field names, so ``dict(m)``-style access works."""
        return self._fields

    @property
    def delta(self) -> torch.Tensor:
        """Alias of ``dt``."""
        return self.dt


def _cplx(p: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(p)


def _real_param(z: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(torch.view_as_real(z.contiguous()).clone())


def _mark(p: nn.Parameter, lr: float | None) -> nn.Parameter:
    # consumed by ssm_param_groups: the paper trains A, B, dt with a small lr and no weight decay
    setattr(p, _OPTIM_ATTR, {"weight_decay": 0.0, "lr": lr})
    return p


class S4(nn.Module):
    """S4 (``mode='nplr'``) / S4D (``mode='diag'``) layer.

    Args:
        d_model: H, number of independent SSMs (input features).
        d_state: N, states per SSM (default 64; even for 'nplr'; an odd N in 'diag' keeps (N+1)//2
            complex modes).
        l_max: fixed maximum length (inputs longer raise ValueError), or None to grow the kernel as
            needed (NPLR doubles its length by updating C~ exactly).
        channels: output channels per feature (output has ``channels * d_model`` features).
        bidirectional: add an anti-causal kernel (``y = causal(u; K_fwd) + flip(causal(flip(u); K_bwd))``);
            no step mode.
        mode: 'nplr' or 'diag'.
        init: HiPPO measure for 'nplr' ('legs', 'legt', 'fout'); S4D init for 'diag'
            ('legs', 'lin', 'inv', 'real'). Default 'legs'.
        dt_min, dt_max: Delta is log-uniform in [dt_min, dt_max] per feature.
        disc: 'bilinear' (only choice for 'nplr') or 'zoh' (default for 'diag').
        kernel_dropout: dropout probability on the kernel entries during training.
        transposed: inputs/outputs are (B, H, L) instead of (B, L, H).
        lr: learning rate attached to A, B, P, log_dt for :func:`ssm_param_groups` (None: main lr).
        kernel_impl: 'auto' (Triton on CUDA, naive PyTorch on CPU), 'triton' or 'naive'.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        l_max: int | None = None,
        channels: int = 1,
        bidirectional: bool = False,
        mode: str = "nplr",
        init: str = "legs",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        disc: str | None = None,
        kernel_dropout: float = 0.0,
        transposed: bool = False,
        lr: float | None = 1e-3,
        kernel_impl: str = "auto",
        device=None,
        dtype=None,
    ):
        super().__init__()
        for name, val in (("d_model", d_model), ("d_state", d_state), ("channels", channels)):
            if isinstance(val, bool) or not isinstance(val, int):
                raise TypeError(f"{name} must be an int, got {type(val).__name__}")
            if val < 1:
                raise ValueError(f"{name} must be >= 1, got {val}")
        if l_max is not None and (isinstance(l_max, bool) or not isinstance(l_max, int) or l_max < 1):
            raise ValueError(f"l_max must be None or a positive int, got {l_max!r}")
        if isinstance(init, str):
            # accept the paper's names too: 'S4D-Lin', 'diag-inv', 'hippo-legs' ...
            init = init.lower()
            for prefix in ("s4d-", "s4d_", "diag-", "diag_", "hippo-", "hippo_"):
                if init.startswith(prefix):
                    init = init[len(prefix):]
        if mode not in ("nplr", "diag"):
            raise ValueError(f"mode must be 'nplr' or 'diag', got {mode!r}")
        if mode == "nplr" and d_state % 2:
            raise ValueError(f"d_state must be even for mode='nplr' (conjugate pairs), got {d_state}")
        if disc is None:
            disc = "bilinear" if mode == "nplr" else "zoh"
        if disc not in ("bilinear", "zoh"):
            raise ValueError(f"disc must be 'bilinear' or 'zoh', got {disc!r}")
        if mode == "nplr" and disc != "bilinear":
            raise ValueError("mode='nplr' supports only disc='bilinear'")
        if not (0 < dt_min <= dt_max):
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if not (0.0 <= kernel_dropout < 1.0):
            raise ValueError(f"kernel_dropout must be in [0, 1), got {kernel_dropout}")
        if kernel_impl not in ("auto", "triton", "naive"):
            raise ValueError(f"kernel_impl must be 'auto', 'triton' or 'naive', got {kernel_impl!r}")

        self.d_model, self.d_state, self.l_max = d_model, d_state, l_max
        self.channels, self.bidirectional = channels, bool(bidirectional)
        self.mode, self.init, self.disc = mode, init, disc
        self.transposed, self.kernel_impl = bool(transposed), kernel_impl
        self.kernel_dropout = nn.Dropout(kernel_dropout) if kernel_dropout > 0 else nn.Identity()
        # stored complex modes: N/2 conjugate pairs ('diag' with odd N keeps (N+1)/2 modes)
        self.n_modes = d_state // 2 if mode == "nplr" else (d_state + 1) // 2
        H, M = d_model, self.n_modes
        c_out = channels * (2 if bidirectional else 1)
        fkw = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        cdtype = torch.complex128 if fkw["dtype"] == torch.float64 else torch.complex64

        if mode == "nplr":
            if init not in hippo.MEASURES:
                raise ValueError(f"init must be one of {hippo.MEASURES} for mode='nplr', got {init!r}")
            f = hippo.nplr(init, d_state, halve=True)
            Lam, B0, P0 = f.Lambda, f.B, f.P
        else:
            Lam, B0 = hippo.diag_init(init, d_state)
            P0 = None
        # Re(Lambda) = -exp(log_A_real) keeps every mode stable; FouT's purely imaginary spectrum is
        # nudged to Re = -1e-4 so the log exists.
        re = (-Lam.real).clamp_min(1e-4)
        self.log_A_real = _mark(nn.Parameter(torch.log(re).expand(H, M).clone().to(**fkw)), lr)
        self.A_imag = _mark(nn.Parameter(Lam.imag.expand(H, M).clone().to(**fkw)), lr)
        self.B = _mark(_real_param(B0.expand(H, M).to(device=device, dtype=cdtype)), lr)
        if P0 is not None:
            self.P = _mark(_real_param(P0[:, None, :].expand(-1, H, M).to(device=device, dtype=cdtype)), lr)
        else:
            self.P = None
        u = torch.rand(H, device=device, dtype=fkw["dtype"])
        log_dt = u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = _mark(nn.Parameter(log_dt), lr)
        # C ~ complex standard normal (variance 1/2 per part); for NPLR it is C~ relative to kernel_length
        C0 = torch.randn(c_out, H, M, device=device, dtype=cdtype)
        self.C = _real_param(C0)
        self.D = nn.Parameter(torch.randn(channels, H, **fkw))
        # NPLR kernel length that C~ refers to (0: none yet; C~ then *is* C, i.e. L = infinity).
        self.register_buffer("kernel_length", torch.tensor(l_max or 0, dtype=torch.long), persistent=True)
        # host copy of kernel_length: reading the (possibly CUDA) buffer would sync the device every forward
        self._klen = int(l_max or 0)
        self._step_cache = None

    # ------------------------------------------------------------------ basic quantities
    def _Lambda(self) -> torch.Tensor:
        return torch.complex(-torch.exp(self.log_A_real), self.A_imag)

    def _dt(self) -> torch.Tensor:
        return torch.exp(self.log_dt)

    def _impl(self, t: torch.Tensor) -> str:
        if self.kernel_impl != "auto":
            return self.kernel_impl
        return "triton" if (t.is_cuda and triton_available(t.device)) else "naive"

    def _fused_nplr(self) -> bool:
        """Whether kernel(L) uses the fused Triton S4 kernel (rank 1, <= 64 stored modes, Triton path).

        ``SEQLAB_S4_FUSED=0`` in the environment falls back to the Cauchy-op path."""
        return (self.P.shape[0] == 1 and self.n_modes <= _NPLR_MAX_MODES
                and os.environ.get("SEQLAB_S4_FUSED", "1") != "0" and self._impl(self.log_dt) == "triton")

    def _fused_diag(self) -> bool:
        """Whether kernel(L) uses the fused Triton S4D kernel (<= 64 modes, Triton path).

        The default since run 6 (blocked Vandermonde: 2 FMA per term, results/s4_bench_run6);
        ``SEQLAB_S4D_FUSED=0`` falls back to the discretise + Vandermonde-op path."""
        return (self.mode == "diag" and self.n_modes <= _DIAG_MAX_MODES
                and os.environ.get("SEQLAB_S4D_FUSED", "1") != "0" and self._impl(self.log_dt) == "triton")

    def _full(self, z: torch.Tensor) -> torch.Tensor:
        """Append the conjugate half along the last dim: (..., M) -> (..., 2M)."""
        return torch.cat([z, z.conj()], dim=-1)

    def _dense_full(self, dtype=torch.complex128):
        """NPLR full-system dense matrices (A_f (H,N,N), Abar (H,N,N), Bbar (H,N), B_f (H,N), dt (H,))."""
        Lam = self._full(self._Lambda()).to(dtype)
        P = self._full(_cplx(self.P)).to(dtype)  # (r, H, N)
        B = self._full(_cplx(self.B)).to(dtype)
        dt = self._dt().to(torch.float64 if dtype == torch.complex128 else torch.float32)
        A = torch.diag_embed(Lam) - torch.einsum("rhn,rhm->hnm", P, P.conj())
        eye = torch.eye(A.shape[-1], dtype=dtype, device=A.device)
        half = (dt / 2)[:, None, None] * A
        Abar = torch.linalg.solve(eye - half, eye + half)
        Bbar = torch.linalg.solve(eye - half, (dt[:, None] * B).unsqueeze(-1)).squeeze(-1)
        return A, Abar, Bbar, B, dt

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._klen = int(self.kernel_length)
        self._step_cache = None

    # ------------------------------------------------------------------ kernel length (NPLR C~)
    @torch.no_grad()
    def _set_length(self, L: int) -> None:
        """Re-express C~ for a kernel length >= L, keeping the actual C fixed (NPLR only)."""
        cur = self._klen
        if self.mode != "nplr" or (cur >= L and cur > 0):
            return
        new = L if cur == 0 else cur
        while new < L:
            new *= 2
        _, Abar, _, _, _ = self._dense_full()
        eye = torch.eye(Abar.shape[-1], dtype=Abar.dtype, device=Abar.device)
        Ct = self._full(_cplx(self.C)).to(Abar.dtype)
        if cur == 0:
            # C~ currently equals C (L = infinity): C~_new = C (I - Abar^new)
            Ct = torch.einsum("chn,hnm->chm", Ct, eye - torch.linalg.matrix_power(Abar, new))
        else:
            # C (I - Abar^{2L}) = C~ (I + Abar^L), applied once per doubling
            while cur < new:
                Ct = torch.einsum("chn,hnm->chm", Ct, eye + torch.linalg.matrix_power(Abar, cur))
                cur *= 2
        M = self.d_state // 2
        self.C.copy_(torch.view_as_real(Ct[..., :M].to(_cplx(self.C).dtype)))
        self.kernel_length.fill_(new)
        self._klen = new
        self._step_cache = None

    def _check_length(self, L) -> int:
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise ValueError(f"L must be a positive int, got {L!r}")
        if self.l_max is not None and L > self.l_max:
            raise ValueError(f"sequence length L={L} exceeds l_max={self.l_max}")
        return L

    # ------------------------------------------------------------------ kernels
    def _nplr_khat(self, Ct_f, Bs_f, L_):
        """Generating function at the rfft roots of unity of length L_.

        Ct_f (c, H, N), Bs_f (nb, H, N) full (conjugate-appended) vectors -> (c, nb, H, L_//2 + 1).
        """
        H = self.d_model
        Lam_f = self._full(self._Lambda()).to(Ct_f.dtype)
        P_f = self._full(_cplx(self.P))
        dt = self._dt()
        r, c, nb = P_f.shape[0], Ct_f.shape[0], Bs_f.shape[0]
        w = (dt / 2)[:, None] * Lam_f  # scaled poles: sum x/(g - lam) = dt/2 sum x/(node - w)
        nyq = L_ % 2 == 0
        nodes, scale = self._nodes(L_, dt.device, dt.dtype)
        left = torch.cat([Ct_f, P_f.conj()], 0)
        right = torch.cat([Bs_f, P_f], 0)
        v = (left[:, None] * right[None]).reshape(-1, H, Lam_f.shape[-1])
        rr = cauchy(v, nodes, w, impl=self._impl(v)) * (dt / 2)[:, None]
        rr = rr.reshape(c + r, nb + r, H, -1)
        k00, k01, k10, k11 = rr[:c, :nb], rr[:c, nb:], rr[c:, :nb], rr[c:, nb:]
        if r == 1:
            khat = k00 - k01[:, 0][:, None] * k10[0][None] / (1 + k11[0, 0])
        else:
            eye = torch.eye(r, dtype=rr.dtype, device=rr.device)
            inv = torch.linalg.inv(eye + k11.permute(2, 3, 0, 1))  # (H, Lf, r, r)
            khat = k00 - torch.einsum("cihl,hlij,jbhl->cbhl", k01, inv, k10)
        khat = khat * scale
        if nyq:
            # at zeta = -1: K(-1) = dt C~ [(1 - zeta) I - (1 + zeta) dt/2 A]^-1 B = dt/2 C~ B
            last = (dt / 2) * (Ct_f[:, None] * Bs_f[None]).sum(-1)
            khat = torch.cat([khat[..., :-1], last.unsqueeze(-1)], dim=-1)
        return khat

    def _nodes(self, L_, device, dtype):
        """Cauchy nodes (1 - zeta)/(1 + zeta) and the factor 2/(1 + zeta) at the rfft roots of unity.

        Constants, cached per (length, device, dtype) to save launches on every forward.
        """
        cache = self.__dict__.setdefault("_node_cache", {})
        key = (L_, str(device), dtype)
        if key not in cache:
            k = torch.arange(L_ // 2 + 1, device=device, dtype=torch.float64)
            zeta = torch.exp(torch.complex(torch.zeros_like(k), -2 * math.pi * k / L_))
            if L_ % 2 == 0:
                # zeta = -1 would put the node at infinity; that value comes from the limit instead.
                zeta[-1] = 1.0
            cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
            cache.clear()
            cache[key] = (((1 - zeta) / (1 + zeta)).to(cdt), (2 / (1 + zeta)).to(cdt))
        return cache[key]

    def _diag_discrete(self):
        """S4D: (log Abar (H, M), Bbar (H, M)) complex."""
        Lam = self._Lambda()
        dt = self._dt()[:, None]
        B = _cplx(self.B)
        if self.disc == "zoh":
            x = dt * Lam
            return x, B * (torch.exp(x) - 1) / Lam
        num, den = 1 + dt * Lam / 2, 1 - dt * Lam / 2
        return torch.log(num / den), B * dt / den

    def kernel(self, L: int) -> torch.Tensor:
        """Convolution kernel Kbar: real (C_out, H, L), C_out = channels (x2 if bidirectional).

        ``Kbar[c, h, l] = (2 Re | Re)(C Abar^l Bbar)`` for the system of :meth:`ssm_matrices`
        (no kernel dropout applied here). For mode='nplr' with ``l_max=None`` a longer L than seen before
        re-expresses the C~ parameter for the new length (the system itself is unchanged).
        """
        L = self._check_length(L)
        if self.mode == "diag":
            if self._fused_diag():
                # one Triton launch forward, two backward, straight from the raw parameters
                return diag_kernel(self.log_A_real, self.A_imag, self.log_dt, self.B, self.C, L, self.disc)
            x, Bbar = self._diag_discrete()
            v = _cplx(self.C) * Bbar
            return vandermonde(v, x, L, impl=self._impl(v))
        self._set_length(L)
        L_ = self._klen
        if self._fused_nplr():
            # one Triton launch + irfft forward; rfft + one Triton launch (+ O(H N) ops) backward
            nodes, scale = self._nodes(L_, self.log_dt.device, self.log_dt.dtype)
            return nplr_kernel(self.log_A_real, self.A_imag, self.log_dt, self.B, self.P, self.C,
                               nodes, scale, L_, L)
        Ct_f = self._full(_cplx(self.C))
        B_f = self._full(_cplx(self.B))[None]
        khat = self._nplr_khat(Ct_f, B_f, L_)[:, 0]
        return torch.fft.irfft(khat, n=L_)[..., :L]

    @torch.no_grad()
    def ssm_matrices(self) -> SSMMatrices:
        """The continuous system this layer computes, as an :class:`SSMMatrices` (detached tensors).

        mode='nplr': the full N-state system in the complex eigenbasis (``halved=False``), with the
        actual ``C = C~ (I - Abar^L)^-1`` for the current kernel length L (C = C~ before any kernel
        was computed with ``l_max=None``). mode='diag': N/2 modes, ``halved=True``.
        """
        cdt = _cplx(self.C).dtype
        D, dt = self.D.detach().clone(), self._dt().detach().clone()
        if self.mode == "diag":
            Lam = self._Lambda()
            return SSMMatrices(torch.diag_embed(Lam).to(cdt), _cplx(self.B).clone(), _cplx(self.C).clone(),
                               D, dt, self.disc, True)
        A, Abar, _, B, _ = self._dense_full()
        C = self._full(_cplx(self.C)).to(A.dtype)
        L = self._klen
        if L > 0:
            eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
            IA = eye - torch.linalg.matrix_power(Abar, L)  # (H, N, N)
            # C = C~ (I - Abar^L)^-1  <=>  (I - Abar^L)^T C^T = C~^T
            C = torch.linalg.solve(IA.transpose(-1, -2).unsqueeze(0), C.unsqueeze(-1)).squeeze(-1)
        return SSMMatrices(A.to(cdt), B.to(cdt), C.to(cdt), D, dt, self.disc, False)

    # ------------------------------------------------------------------ forward
    def _check_input(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor, got {x.dtype}")
        if x.dim() != 3:
            layout = "(batch, d_model, length)" if self.transposed else "(batch, length, d_model)"
            raise ValueError(f"x must be 3-D {layout}, got shape {tuple(x.shape)}")
        u = x if self.transposed else x.transpose(1, 2)
        if u.shape[1] != self.d_model:
            raise ValueError(f"x has {u.shape[1]} features, expected d_model={self.d_model}")
        return u

    def _check_state(self, state, batch):
        M = self.n_modes
        if not isinstance(state, torch.Tensor):
            raise TypeError(f"state must be a torch.Tensor, got {type(state).__name__}")
        if not state.is_complex():
            raise TypeError(f"state must be complex (from default_state), got {state.dtype}")
        if tuple(state.shape) != (batch, self.d_model, M):
            raise ValueError(f"state must have shape {(batch, self.d_model, M)}, got {tuple(state.shape)}")

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, return_state: bool = False):
        """Convolutional forward.

        Args:
            x: (B, L, H) real, or (B, H, L) with ``transposed=True``.
            state: optional complex (B, H, n_modes) state (from :meth:`default_state`, :meth:`step`
                or a previous forward); the output then continues that sequence exactly.
            return_state: also compute the final state when ``state`` is None.

        Returns:
            ``(y, next_state)``: y (B, L, channels*H) (or (B, channels*H, L)); features ordered
            (channel, h). ``next_state`` (B, H, n_modes) complex, or None unless a state was given or
            ``return_state``. Computing the state materialises O(B H N L) (use :meth:`step` for
            generation).
        """
        u = self._check_input(x)
        Bsz, H, L = u.shape
        self._check_length(L)
        want_state = state is not None or return_state
        if want_state and self.bidirectional:
            raise ValueError("state is not defined for a bidirectional S4 layer")
        if state is not None:
            self._check_state(state, Bsz)
        out_dtype = u.dtype
        if u.dtype in (torch.float16, torch.bfloat16):
            u = u.float()  # FFTs of arbitrary length need float32 (e.g. under autocast)
        k = self.kernel_dropout(self.kernel(L)).to(u.dtype)
        y = fft_conv(u, k, bidirectional=self.bidirectional)  # (B, c, H, L)
        y = y + self.D[None, :, :, None].to(u.dtype) * u[:, None]
        next_state = None
        if state is not None:
            y = y + self._state_response(state, L)
        if want_state:
            s0 = state if state is not None else self.default_state(Bsz, device=u.device)
            next_state = self._final_state(u, s0)
        y = y.reshape(Bsz, -1, L).to(out_dtype)
        if not self.transposed:
            y = y.transpose(1, 2)
        return y, next_state

    def _state_response(self, state, L):
        """Contribution ``f(C Abar^{l+1} s)`` of an initial state, (B, c, H, L)."""
        Bsz = state.shape[0]
        if self.mode == "diag":
            x, _ = self._diag_discrete()
            C = _cplx(self.C)  # (c, H, M)
            v = (C[:, None] * (torch.exp(x) * state)[None]).reshape(-1, self.d_model, x.shape[-1])
            ks = vandermonde(v, x, L, impl=self._impl(v))
            return ks.reshape(C.shape[0], Bsz, self.d_model, L).transpose(0, 1)
        self._set_length(L)
        L_ = self._klen
        # C Abar^k (Abar s) has generating function C~ (I - Abar z)^-1 (I - dt/2 A)^-1 dt b' with
        # b' = (I + dt/2 A) s / dt, i.e. the ordinary kernel with B replaced by b'.
        dt = self._dt()[:, None]
        bp = (state + dt / 2 * self._apply_A_half(state)) / dt
        khat = self._nplr_khat(self._full(_cplx(self.C)), self._full(bp), L_)
        return torch.fft.irfft(khat, n=L_)[..., :L].transpose(0, 1).to(state.real.dtype)

    def _apply_A_half(self, x, Lam=None, P=None):
        """First half of A_f x_f for a conjugate-symmetric x_f = [x, conj x]: x (..., H, M)."""
        P = _cplx(self.P) if P is None else P  # (r, H, M)
        Lam = self._Lambda() if Lam is None else Lam
        q = 2 * (P.conj() * x.unsqueeze(-3)).sum(-1).real  # (..., r, H)
        return Lam * x - (P * q.unsqueeze(-1).to(P.dtype)).sum(-3)

    def _final_state(self, u, s0):
        """State after the sequence: Abar^L s0 + sum_l Abar^{L-1-l} Bbar u_l, (B, H, M) complex."""
        L = u.shape[-1]
        if self.mode == "diag":
            x, Bbar = self._diag_discrete()
            ell = torch.arange(L - 1, -1, -1, device=u.device, dtype=x.real.dtype)
            pw = torch.exp(x.unsqueeze(-1) * ell)  # (H, M, L)
            acc = torch.einsum("bhl,hml->bhm", u.to(pw.dtype), pw) * Bbar
            return acc + torch.exp(x * L) * s0
        M = self.d_state // 2
        _, Abar, Bbar, _, _ = self._dense_full(dtype=s0.dtype)
        v = Bbar[None, :, :, None] * u[:, :, None, :].to(Bbar.dtype)  # (B, H, N, L)
        A = Abar
        # log-depth scan: combine neighbours (v_l, v_{l+1}) -> Abar v_l + v_{l+1}, squaring Abar each level
        while v.shape[-1] > 1:
            if v.shape[-1] % 2:
                v = torch.cat([torch.zeros_like(v[..., :1]), v], dim=-1)
            v = torch.einsum("hnm,bhml->bhnl", A, v[..., 0::2]) + v[..., 1::2]
            A = A @ A
        s_f = self._full(s0)
        AL = torch.linalg.matrix_power(Abar, L)
        out = v[..., 0] + torch.einsum("hnm,bhm->bhn", AL, s_f)
        return out[..., :M]

    # ------------------------------------------------------------------ recurrent mode
    def default_state(self, batch: int, device=None) -> torch.Tensor:
        """Zero state: complex (batch, H, n_modes) on the parameters' device (n_modes = d_state // 2, or
        (d_state + 1) // 2 for an odd d_state in mode='diag')."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        C = _cplx(self.C)
        return torch.zeros(batch, self.d_model, self.n_modes, dtype=C.dtype,
                           device=device or C.device)

    @torch.no_grad()
    def setup_step(self) -> None:
        """Precompute the discrete recurrence from the current parameters (call after each update)."""
        if self.bidirectional:
            raise ValueError("step mode is not defined for a bidirectional S4 layer")
        cache = {}
        if self.mode == "diag":
            x, Bbar = self._diag_discrete()
            cache.update(Abar=torch.exp(x), Bbar=Bbar, C=_cplx(self.C).clone())
        else:
            M = self.d_state // 2
            C = self.ssm_matrices().C[..., :M].contiguous()
            Lam, P, B, dt = self._Lambda(), _cplx(self.P), _cplx(self.B), self._dt()[:, None]
            d = 1 - dt / 2 * Lam  # diagonal of I - dt/2 Lambda
            # Woodbury for (I - dt/2 A_f)^-1 with A_f = Lambda_f - P_f P_f^*; the r x r core is real
            # because the sums over conjugate halves pair up.
            S = 2 * torch.einsum("ihm,jhm->hij", P.conj(), P / d).real  # (H, r, r)
            r = P.shape[0]
            eye = torch.eye(r, dtype=S.dtype, device=S.device)
            core = torch.linalg.inv(2 / self._dt()[:, None, None] * eye + S)
            cache.update(C=C, d=d, Pd=P / d, Pc=P.conj(), core=core, dt=dt, B=B, Lam=Lam, P=P)
            if r == 1:
                # flat inputs of the fused Triton step (kernels.ssm_step)
                cache.update(k_a1=(dt / 2 * Lam).contiguous(), k_a2=(dt * B).contiguous(),
                             k_inv_d=(1 / d).contiguous(), k_P=P[0].contiguous(),
                             k_core=torch.cat([core[:, 0, 0], dt[:, 0] / 2]).contiguous())
        cache["D"] = self.D.detach().clone().contiguous()
        cache["dplr"] = self.mode == "nplr"
        # fused one-launch step where Triton runs (rank-1 DPLR or diagonal); PyTorch ops otherwise
        C = cache["C"]
        cache["fused"] = (self.kernel_impl != "naive" and triton_available(C.device)
                          and (self.mode == "diag" or "k_P" in cache)
                          and (self.kernel_impl == "triton" or C.is_cuda))
        self._step_cache = cache

    def step(self, x_t: torch.Tensor, state: torch.Tensor):
        """One recurrent step: x_t (B, H) real, state (B, H, n_modes) complex.

        Returns ``(y_t (B, channels*H), next_state)``; O(H N) work (DPLR or diagonal update). Uses the
        matrices from the last :meth:`setup_step` (run automatically the first time).
        """
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.d_model:
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"x_t must be (batch, d_model={self.d_model}), got {shape}")
        self._check_state(state, x_t.shape[0])
        if self._step_cache is None or self._step_cache["C"].dtype != state.dtype:
            self.setup_step()
        c = self._step_cache
        u = x_t.to(state.real.dtype)
        if c["fused"] and not torch.is_grad_enabled():
            y, s = ssm_step(u, state, c)
            return y.reshape(u.shape[0], -1).to(x_t.dtype), s
        if self.mode == "diag":
            s = c["Abar"] * state + c["Bbar"] * u.unsqueeze(-1)
        else:
            dt = c["dt"]
            y1 = state + dt / 2 * self._apply_A_half(state, c["Lam"], c["P"]) + (dt * c["B"]) * u.unsqueeze(-1)
            q = 2 * (c["Pc"] * (y1 / c["d"]).unsqueeze(-3)).sum(-1).real  # (B, r, H)
            corr = torch.einsum("hij,bjh->bih", c["core"], q)
            s = y1 / c["d"] - (c["Pd"] * corr.unsqueeze(-1).to(state.dtype)).sum(-3)
        y = 2 * torch.einsum("chm,bhm->bch", c["C"], s).real + c["D"][None] * u[:, None]
        return y.reshape(u.shape[0], -1).to(x_t.dtype), s

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_state={self.d_state}, mode={self.mode!r}, init={self.init!r}, "
                f"disc={self.disc!r}, channels={self.channels}, bidirectional={self.bidirectional}, "
                f"l_max={self.l_max}")


def ssm_param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups: S4's A, B, P, dt get their own lr (layer ``lr``) and no weight decay.

    Returns a list of dicts for ``torch.optim.AdamW(groups, ...)``: the first group holds every other
    parameter with ``lr`` and ``weight_decay``; one extra group per distinct special setting.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    normal, special = [], {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        hp = getattr(p, _OPTIM_ATTR, None)
        if hp is None:
            normal.append(p)
            continue
        hp = {"lr": lr if hp.get("lr") is None else hp["lr"], "weight_decay": hp.get("weight_decay", 0.0)}
        special.setdefault(tuple(sorted(hp.items())), []).append(p)
    groups = [{"params": normal, "lr": lr, "weight_decay": weight_decay}]
    for key, params in special.items():
        groups.append({"params": params, **dict(key)})
    return groups

