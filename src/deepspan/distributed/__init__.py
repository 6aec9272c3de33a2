"""Scale-out on torch.distributed: shard the samples, reduce exact streaming statistics across processes.

Every deepspan accumulator (``GramAccumulator``, ``CrossGramAccumulator``, ``ClassStatsAccumulator``,
``SpectrumAccumulator``, ``NC4Accumulator``, ...) holds float64 sufficient statistics with an exact pairwise
merge (Chan, Golub and LeVeque 1979). This package reduces them across the processes of a
``torch.distributed`` process group (gloo on CPUs, NCCL on GPUs):

* :func:`all_reduce` / :func:`reduce` -- any accumulator, through ``state_dict`` / ``from_state_dict`` /
  ``merge``: every rank's state merged in rank order (for the Gram family: small states gathered, the big
  matrices summed by one tensor all_reduce), so the result is bitwise the same on every rank and equals
  one pass over all samples up to float64 rounding;
* :func:`shard` -- this rank's contiguous slice of N samples, with global indices and ids;
* :func:`pvector` -- the full P-vector u (length N, global sample order) on every rank, equal to
  ``deepspan.pvector`` of the stacked features (two passes over the local batches);
* :func:`angle` -- the P-vector angle of two models' features, one pass (cross-Gram route).

Above this package, the same reductions run inside the library's own steps: ``deepspan.extract(...,
distributed=True)`` extracts each rank's share of a sample set and reduces its accumulators in place;
``deepspan.features.gather_featureset`` stacks the ranks' features on one rank; ``deepspan.Tracker`` works
unchanged inside DDP training (rank 0 computes and writes); ``deepspan compare`` / ``deepspan track`` run
under ``torchrun``.

Not initialised, or a group of one process: ``all_reduce`` / ``reduce`` return the accumulator itself,
``shard`` gives everything to rank 0, ``pvector`` / ``angle`` are the single-process streamed routes.

What is sent: ``state_dict()`` copies device state to host numpy. The small parts travel with torch's
object collectives (pickled; for NCCL through a byte tensor on ``torch.cuda.current_device()``: call
``torch.cuda.set_device(local_rank)`` first); the d x d float64 matrices of the Gram family in one tensor
``all_reduce`` (on the current GPU with NCCL), about 2 (world - 1) / world x their size sent per rank in a
ring. The result goes back to the accumulator's device. Accumulators outside the Gram family are gathered
whole: each rank then holds world states while merging (only ``dst`` does, for :func:`reduce`).

Failures and timeouts. Errors inside these functions' local steps (a bad batch, a second pass with other
samples, ids on two ranks) are gathered and raised on *every* rank: the failing rank raises its own
exception, the others :class:`RankFailedError`. A rank that fails *outside* them -- raises before it
reaches a collective the others are waiting in -- cannot be reported that way: the others wait in the
collective until the process group notices. With gloo they raise ``RuntimeError`` (a
``torch.distributed.DistBackendError``) at once when the failed process exits ("Connection closed by
peer"), and otherwise when the group's timeout expires ("Timed out waiting ... ms"): set it in
``init_process_group(backend, timeout=datetime.timedelta(seconds=...))`` (torch's default is 30 minutes).
With NCCL the watchdog aborts the collective after the same timeout (``TORCH_NCCL_ASYNC_ERROR_HANDLING``,
on by default). ``torchrun`` also stops the remaining workers when one exits with an error.
"""

from deepspan.distributed._comm import RankFailedError, rank_and_world
from deepspan.distributed.pvectors import angle, pvector
from deepspan.distributed.reduce import all_reduce, merge_states, reduce
from deepspan.distributed.shard import Shard, shard

__all__ = ["all_reduce", "reduce", "merge_states", "shard", "Shard", "pvector", "angle", "RankFailedError",
           "rank_and_world"]
