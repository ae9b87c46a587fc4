"""closedloop's benchmarks (a source checkout's, not part of the package): ``run.py`` times
closedloop against :mod:`benchmarks.baseline`, the paper's algorithm in eager PyTorch;
``ensemble.py`` times ensembles (also on a GPU, see ``gpu.sh``). They need the benchmark
extra (``pip install -e '.[bench]'``: PyTorch)."""
