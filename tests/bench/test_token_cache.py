"""The token table cache (bench/token_cache.py): compact tables expand to the tokenizer's exact output; a
warm start reads the cache instead of tokenising; a corrupt cache file is tokenised again with a warning."""

import logging

import numpy as np
import torch

from bench import token_cache
from bench.models.text import Tokenizer


def _texts(n):
    return [f"Abnormal, glaucoma case {i}" if i % 3 else f"normal fundus, no finding number {i} of many" for i in range(n)]


def test_compact_table_expands_to_the_tokenizer_output(tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "MIN_CACHED", 1)
    tok = Tokenizer(32)
    texts = _texts(50)
    full = tok(texts)
    table, row, dtype = token_cache.token_table(texts, tok, owner=tok, folder=tmp_path)
    assert table.dtype == torch.int32 and table.shape[1] < 32 and row == (32,) and dtype == torch.int64
    rows = torch.tensor([3, 0, 49, 3])
    assert torch.equal(token_cache.expand(table, rows, row[-1], dtype), full[rows])


def test_warm_start_reads_the_cache_and_a_corrupt_file_is_rebuilt(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(token_cache, "MIN_CACHED", 1)
    tok = Tokenizer(16)
    texts = _texts(40)
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return tok(batch)

    cold = token_cache.token_table(texts, counting, owner=tok, folder=tmp_path)[0]
    assert 40 in calls
    calls.clear()
    warm = token_cache.token_table(texts, counting, owner=tok, folder=tmp_path)[0]
    assert torch.equal(warm, cold) and 40 not in calls  # only the probe was tokenised
    (f,) = tmp_path.glob("*.npy")
    f.write_bytes(b"not an npy file")
    with caplog.at_level(logging.WARNING):
        again = token_cache.token_table(texts, counting, owner=tok, folder=tmp_path)[0]
    assert torch.equal(again, cold) and 40 in calls
    assert "unreadable" in caplog.text
    assert np.array_equal(np.load(f), cold.numpy())  # rewritten


def test_changed_texts_or_context_length_tokenise_again(tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "MIN_CACHED", 1)
    texts = _texts(20)
    token_cache.token_table(texts, Tokenizer(16), folder=tmp_path)
    changed = texts[:-1] + ["a different text"]
    got = token_cache.token_table(changed, Tokenizer(16), folder=tmp_path)
    assert torch.equal(token_cache.expand(got[0], torch.arange(20), 16, torch.int64), Tokenizer(16)(changed))
    longer = token_cache.token_table(texts, Tokenizer(24), folder=tmp_path)
    assert longer[1] == (24,)
    assert len(list(tmp_path.glob("*.npy"))) == 3
