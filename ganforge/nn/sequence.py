"""Sequence networks for text GANs: an LSTM/GRU generator, and CNN and recurrent discriminators.

The answer to "if x is text, what are G, D and z?": G is a recurrent language model that writes a
sentence token by token; its randomness is the sampling of each token, so it takes no noise vector
(``model.z_dim: 0``: with a latent z the likelihood that MLE and NLL-test need would be
intractable). D reads a sentence either as token ids or, for the Gumbel-softmax
relaxation, as one soft one-hot vector per position: ``embedding(ids)`` and ``soft @ embedding``
are the same function of a hard one-hot, so one D serves both.

Token conventions (from the data spec): ``eos`` ends a sentence and every later position holds
``pad``; data without an end token (the synthetic oracle) has fixed-length sequences. G's input
embedding has one extra row, the begin-of-sentence input, which is never an output.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = Any  # (h, c) for an LSTM, h for a GRU


def gumbel_like(x: Tensor) -> Tensor:
    """Standard Gumbel noise shaped like ``x``, from torch's (seeded, forked at sampling) global RNG."""
    u = torch.rand_like(x, dtype=torch.float32).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def sample_categorical(logits: Tensor) -> Tensor:
    """One draw per row from softmax(logits) by inverting the CDF with one uniform per row (4-5x
    faster on a CPU than Gumbel-max or torch.multinomial for vocabularies of thousands)."""
    logits = logits.float()
    # Unnormalised: exp(l - max) summed cumulatively; the uniform is scaled by the total instead.
    cdf = (logits - logits.amax(1, keepdim=True)).exp_().cumsum_(1)
    # 1 - U lies in (0, 1]: u is never 0, which searchsorted would map to token 0 whatever its mass.
    u = (1.0 - torch.rand(logits.shape[0], 1, device=logits.device)) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(1).clamp_max_(logits.shape[1] - 1)


def alive_mask(tokens: Tensor, eos: int | None) -> Tensor:
    """(n, T) bool: positions up to and including the first ``eos`` (all positions without one)."""
    if eos is None:
        return torch.ones_like(tokens, dtype=torch.bool)
    ended = (tokens == eos).long().cumsum(1)
    # A position is alive when no eos came strictly before it.
    return (ended - (tokens == eos).long()) == 0


class SequenceGenerator(nn.Module):
    """A recurrent language model as the generator (SeqGAN's G; MLE's model).

    ``forward(v)`` samples ``{"x": tokens}`` (n, T) at ``self.temperature``; ``log_probs`` scores
    given sequences (teacher forcing: MLE, NLL-test, the policy gradient); ``generate`` also returns
    Gumbel-softmax relaxed one-hots; ``step`` and ``states`` serve Monte-Carlo rollouts.
    """

    def __init__(self, vocab_size: int, max_len: int, emb: int = 32, hidden: int = 32, cell: str = "lstm",
                 layers: int = 1, eos: int | None = None, pad: int | None = None) -> None:
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"unknown recurrent cell '{cell}' (choices: lstm, gru)")
        self.vocab_size, self.max_len, self.cell, self.layers, self.hidden = vocab_size, max_len, cell, layers, hidden
        self.eos, self.pad, self.bos = eos, pad, vocab_size
        self.embed = nn.Embedding(vocab_size + 1, emb)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(emb, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)
        self.chunk = 512  # rows sampled at once
        self.temperature = 1.0  # of forward()'s sampling; set by GeneratorArtifact.sample(temperature=)

    # -- teacher forcing -----------------------------------------------------------------------

    def initial_state(self, v: Tensor) -> State:
        """The zero state for ``len(v)`` sentences (``v``: the prior's empty input vectors)."""
        h = torch.zeros(self.layers, v.shape[0], self.hidden, device=v.device)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def _inputs(self, tokens: Tensor) -> Tensor:
        bos = torch.full((tokens.shape[0], 1), self.bos, dtype=torch.long, device=tokens.device)
        return torch.cat([bos, tokens[:, :-1]], 1)

    def _start(self, tokens: Tensor, v: Tensor | None) -> State:
        """The initial state for these sequences (``v``: the prior's empty input vectors, or none)."""
        return self.initial_state(tokens.new_zeros((tokens.shape[0], 0), dtype=torch.float32) if v is None else v)

    def _hidden(self, tokens: Tensor, v: Tensor | None) -> Tensor:
        """(n, T, hidden): the teacher-forced states, position t having read BOS and tokens before t."""
        h, _ = self.rnn(self.embed(self._inputs(tokens)), self._start(tokens, v))
        return h

    def logits(self, tokens: Tensor, v: Tensor | None = None) -> Tensor:
        """(n, T, V) next-token logits for given sequences (position t sees tokens before t)."""
        return self.out(self._hidden(tokens, v))

    def log_probs(self, tokens: Tensor, v: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """(n, T) log-probability of each token given its prefix, under softmax(logits / temperature);
        0 at positions past the end token (only counted positions reach the output layer: most of a
        padded caption is padding, and the softmax over the vocabulary is the step's main cost)."""
        mask = self.mask(tokens)
        logits = self.out(self._hidden(tokens, v)[mask]).float()
        if temperature != 1.0:
            logits = logits / temperature
        out = torch.zeros(tokens.shape, dtype=logits.dtype, device=tokens.device)
        out[mask] = -F.cross_entropy(logits, tokens[mask], reduction="none")
        return out

    def mask(self, tokens: Tensor) -> Tensor:
        """Positions that count (up to and including the first end token)."""
        return alive_mask(tokens, self.eos)

    def nll(self, tokens: Tensor, v: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """Mean negative log-likelihood per counted token (the MLE loss; NLL-test)."""
        m = self.mask(tokens)
        return -self.log_probs(tokens, v, temperature).sum() / m.sum().clamp_min(1)

    # -- sampling ------------------------------------------------------------------------------

    def step(self, inp: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: input token ids (n,) -> next-token logits (n, V) and the new state."""
        h, state = self.rnn(self.embed(inp).unsqueeze(1), state)
        return self.out(h[:, 0]).float(), state

    def generate(self, n: int | None = None, v: Tensor | None = None, temperature: float = 1.0,
                 tau: float | None = None, prefix: Tensor | None = None, state: State = None,
                 first: Tensor | None = None, steps: int | None = None) -> dict[str, Tensor]:
        """Sample sentences token by token.

        ``temperature`` scales the logits of the sampling distribution. ``tau`` (Gumbel-softmax,
        Kusner and Hernandez-Lobato 2016; RelGAN's form): each token is argmax(logits + Gumbel
        noise) and ``"soft"`` (n, T, V) holds softmax((logits + noise) / tau), differentiable
        with respect to G. Continuation (rollouts): ``state`` after a prefix and ``first`` the
        next input token, for ``steps`` more positions. After an end token every position is pad.
        """
        device = next(self.parameters()).device
        if state is None:
            if v is None:
                v = torch.zeros((n or 0, 0), device=device)
            n = v.shape[0]
            if n > self.chunk:
                # Sampling over a vocabulary of thousands is memory-bound: a few hundred rows at a
                # time stay in cache (1.6x faster per row than 4,096 on a 2-core Xeon).
                parts = [self.generate(v=part, temperature=temperature, tau=tau) for part in v.split(self.chunk)]
                return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            state = self.initial_state(v)
            inp = torch.full((n,), self.bos, dtype=torch.long, device=device)
        else:
            assert first is not None
            inp, n = first, first.shape[0]
        steps = self.max_len if steps is None else steps
        alive = torch.ones(n, dtype=torch.bool, device=device)
        if prefix is not None and self.eos is not None:
            alive = ~(prefix == self.eos).any(1)
        if tau is None:
            return {"x": self._sample(inp, state, alive, steps, temperature)}
        tokens, softs = [], []
        for _ in range(steps):
            logits, state = self.step(inp, state)
            if temperature != 1.0:
                logits = logits / temperature
            noisy = logits + gumbel_like(logits)  # Gumbel-max: an exact sample of softmax(logits)
            tok = noisy.argmax(1)
            soft = torch.softmax(noisy / tau, 1)
            if self.eos is not None:  # an ended sentence continues as pads, exact one-hots
                tok = torch.where(alive, tok, torch.full_like(tok, self.pad))
                dead = F.one_hot(torch.full_like(tok, self.pad), self.vocab_size).to(soft.dtype)
                soft = torch.where(alive[:, None], soft, dead)
                alive = alive & (tok != self.eos)
            tokens.append(tok)
            softs.append(soft)
            inp = tok
        return {"x": torch.stack(tokens, 1), "soft": torch.stack(softs, 1)}

    def _sample(self, inp: Tensor, state: State, alive: Tensor, steps: int, temperature: float) -> Tensor:
        """Hard samples, computing only the sentences still being written: a finished one is
        dropped from the batch (a caption of 12 tokens padded to 38 costs 12 steps, not 38)."""
        n = inp.shape[0]
        out = torch.full((n, steps), self.pad if self.pad is not None else 0, dtype=torch.long, device=inp.device)
        rows = alive.nonzero().squeeze(1)
        if len(rows) < n:
            inp, state = inp[rows], select_state(state, rows)
        for t in range(steps):
            if len(rows) == 0:
                break
            logits, state = self.step(inp, state)
            tok = sample_categorical(logits / temperature if temperature != 1.0 else logits)
            out[rows, t] = tok
            if self.eos is not None:
                keep = tok != self.eos
                if not bool(keep.all()):
                    kept = keep.nonzero().squeeze(1)
                    rows, tok, state = rows[kept], tok[kept], select_state(state, kept)
            inp = tok
        return out

    def states(self, tokens: Tensor, v: Tensor | None = None) -> list[State]:
        """The recurrent state before each position: ``states[t]`` (t = 0..T-1) has read BOS and
        tokens[:, :t-1]; stepped with the input ``tokens[:, t-1]`` it writes token t."""
        state = self._start(tokens, v)
        out = [state]
        inputs = self._inputs(tokens)
        for t in range(tokens.shape[1] - 1):
            _, state = self.rnn(self.embed(inputs[:, t]).unsqueeze(1), state)
            out.append(state)
        return out

    def forward(self, v: Tensor) -> dict[str, Tensor]:
        return self.generate(v=v, temperature=self.temperature)


def repeat_state(state: State, m: int) -> State:
    """Each sequence's state repeated ``m`` times (rows i*m .. i*m+m-1 belong to sequence i)."""
    if isinstance(state, tuple):
        return tuple(s.repeat_interleave(m, dim=1) for s in state)
    return state.repeat_interleave(m, dim=1)


def select_state(state: State, rows: Tensor) -> State:
    """The states of the sequences ``rows``."""
    if isinstance(state, tuple):
        return tuple(s[:, rows] for s in state)
    return state[:, rows]


class TokenEmbedding(nn.Module):
    """Embeds token ids (n, T) by lookup and soft one-hots (n, T, V) by a product with the same table."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(vocab_size, dim) * 0.1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.long, torch.int32, torch.int64):
            return F.embedding(x, self.weight)
        return x.to(self.weight.dtype) @ self.weight


# SeqGAN's discriminator (Yu et al. 2017, after Kim 2014): these window sizes and filter counts.
SEQGAN_WINDOWS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
SEQGAN_FILTERS = (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160)


class TextCNN(nn.Module):
    """SeqGAN's CNN discriminator: embeddings, convolutions of several window sizes with max-over-time
    pooling, a highway layer, dropout and a linear output (a logit). ``scale`` multiplies the
    filter counts (1.0 = SeqGAN's 1,720 filters)."""

    def __init__(self, vocab_size: int, max_len: int, emb: int = 64, dropout: float = 0.25, scale: float = 1.0) -> None:
        super().__init__()
        self.embed = TokenEmbedding(vocab_size, emb)
        pairs = [(w, max(1, round(f * scale))) for w, f in zip(SEQGAN_WINDOWS, SEQGAN_FILTERS, strict=True)
                 if w <= max_len]
        self.convs = nn.ModuleList(nn.Conv1d(emb, f, w) for w, f in pairs)
        width = sum(f for _, f in pairs)
        self.highway = nn.Linear(width, 2 * width)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, 1)

    def forward(self, x: Tensor, features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        e = self.embed(x).transpose(1, 2)  # (n, emb, T)
        h = torch.cat([F.relu(conv(e)).amax(2) for conv in self.convs], 1)
        t, g = self.highway(h).chunk(2, 1)
        g = torch.sigmoid(g)
        h = g * F.relu(t) + (1 - g) * h
        h = self.drop(h)
        out = self.head(h).squeeze(1)
        return (out, h) if features else out


class TextRNN(nn.Module):
    """A recurrent discriminator: embeddings, an LSTM or GRU, a linear output on the final state."""

    def __init__(self, vocab_size: int, emb: int = 64, hidden: int = 64, cell: str = "lstm",
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = TokenEmbedding(vocab_size, emb)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(emb, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor, features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        h, _ = self.rnn(self.embed(x))
        h = self.drop(h[:, -1])
        out = self.head(h).squeeze(1)
        return (out, h) if features else out


def oracle_lstm(vocab_size: int = 5000, max_len: int = 20, dim: int = 32, seed: int = 0) -> SequenceGenerator:
    """SeqGAN's synthetic oracle: an LSTM (embedding and hidden size ``dim``) with every parameter
    drawn from N(0, 1) with a seeded generator; fixed-length sequences, no end token."""
    net = SequenceGenerator(vocab_size, max_len, emb=dim, hidden=dim, cell="lstm")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net.eval().requires_grad_(False)

