"""closedloop's benchmarks (a source checkout's, not part of the package): ``run.py`` times
closedloop against :mod:`benchmarks.baseline`, the paper's algorithm in eager PyTorch;
``ours.py`` times closedloop's side in fresh processes (``ours.py ensemble``: ensembles, also
on a GPU, see ``gpu.sh``). They need the benchmark extra (``pip install -e '.[bench]'``:
PyTorch)."""
