"""SeqGAN's synthetic oracle: a random LSTM whose samples are the training data, and whose
likelihood scores G's samples (NLL-oracle), so quality is measured exactly, not by n-gram overlap.

As in Yu et al. (2017): embedding and hidden size 32, vocabulary 5,000, sentences of 20 tokens,
every parameter N(0, 1); 10,000 training sequences, and 10,000 more held out for NLL-test. The
oracle is a function of its seed, so every run (and ``ganforge eval``) rebuilds the same one.

A data set made by a network: it sits above the data sources and the networks (which know nothing
of each other) and registers itself as the data set ``oracle`` (``ganforge`` imports it).
"""
from __future__ import annotations

import torch

from ganforge.data import register_dataset
from ganforge.data.text import TextData
from ganforge.data.vocab import Vocabulary
from ganforge.nn.sequence import oracle_lstm
from ganforge.registry import ConfigError


def oracle_data(vocab_size: int = 5000, length: int = 20, dim: int = 32, seed: int = 0, n_train: int = 10_000,
                n_test: int = 10_000) -> TextData:
    """The oracle's training sequences as a data source; ``.oracle`` is the oracle network and
    ``.test_tokens`` the held-out sequences."""
    for key, value in (("vocab_size", vocab_size), ("length", length), ("dim", dim), ("n_train", n_train),
                       ("n_test", n_test)):
        if value < 1:
            raise ConfigError(f"data 'oracle': {key} must be positive, got {value}")
    oracle = oracle_lstm(vocab_size, length, dim, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        with torch.no_grad():
            # In chunks of 500: sampling over 5,000 words is memory-bound, small batches stay in cache.
            train = torch.cat([oracle.generate(min(500, n_train - i))["x"] for i in range(0, n_train, 500)])
            test = torch.cat([oracle.generate(min(500, n_test - i))["x"] for i in range(0, n_test, 500)])
    data = TextData.from_tokens(train, Vocabulary.numbered(vocab_size), test_tokens=test)
    data.oracle = oracle
    data.oracle_config = {"vocab_size": vocab_size, "length": length, "dim": dim, "seed": seed,
                           "n_train": n_train, "n_test": n_test}
    return data


register_dataset("oracle", oracle_data, "SeqGAN's synthetic oracle: a random LSTM's sentences "
                 "(vocabulary 5,000, length 20)")
