"""Two real CPU processes (gloo): values and gradients equal the single-process computation on the
concatenated batch (rank 0's rows first).

What is compared, per case:
- every returned value (``loss`` and each term) on every rank == the single-process value;
- with ``gather_with_grad`` (default): the gradient that reaches rank r's local features, divided by the
  world size (what DDP's averaging does to parameter gradients), == the single-process gradient of those
  rows; the gradients of logit_scale / logit_bias averaged over ranks == the single-process ones;
- with ``gather_with_grad=False``: values only (gradients hold only the local partials, as in open_clip).
"""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

import obj_dist_worker as w

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    tmp = tmp_path_factory.mktemp("dist")
    mp.spawn(w.worker, args=(2, str(tmp / "init"), str(tmp / "out")), nprocs=2, join=True)
    ranks = [torch.load(f"{tmp / 'out'}.{r}") for r in range(2)]
    single = [w.run_case(name, opts, kind, slice(None)) for name, opts, kind in w.CASES]
    return ranks, single


@pytest.mark.parametrize("i", range(len(w.CASES)), ids=[f"{n}-{o}-{k}" for n, o, k in w.CASES])
def test_two_processes_equal_single_process(results, i):
    ranks, single = results
    name, opts, kind = w.CASES[i]
    vals, grads, params = single[i]
    per = w.B // 2
    for r, res in enumerate(ranks):
        rvals, rgrads, rparams = res[i]
        assert set(rvals) == set(vals)
        for k in vals:
            torch.testing.assert_close(rvals[k], vals[k], rtol=1e-10, atol=1e-12, equal_nan=True, msg=f"rank {r} {k}")
        if opts.get("gather_with_grad", True):
            for k, g in grads.items():
                torch.testing.assert_close(
                    rgrads[k] / 2, g[r * per : (r + 1) * per], rtol=1e-9, atol=1e-12, msg=f"rank {r} d{k}"
                )
    if opts.get("gather_with_grad", True):
        for k in params:
            avg = (ranks[0][i][2][k] + ranks[1][i][2][k]) / 2
            torch.testing.assert_close(avg, params[k], rtol=1e-9, atol=1e-12, msg=f"d{k}")
    if name == "mgll_released":
        assert float(vals["kl_dropped"]) == 0.0
