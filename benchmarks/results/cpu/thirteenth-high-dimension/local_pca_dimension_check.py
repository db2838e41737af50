"""The local-PCA dimension estimate (`input_choices.local_pca_dimension`) on the benchmark manifolds: median, 10th
and 90th percentile of the pointwise dimension, and seconds per call; output in local_pca_dimension_check.txt."""

import time

import torch

from learned_manifold_training.data import Sphere, SwissRoll, Torus
from learned_manifold_training.input_choices import local_pca_dimension

torch.set_num_threads(1)
MANIFOLDS = [("S2", Sphere(2, 64)), ("S4", Sphere(4, 64)), ("S8", Sphere(8, 64)), ("S12", Sphere(12, 64)),
             ("S16", Sphere(16, 64)), ("S24", Sphere(24, 64)), ("roll", SwissRoll(10)), ("torus", Torus(3))]
for name, manifold in MANIFOLDS:
    for n in (1000, 10000, 100000):
        x = manifold.sample(n, generator=torch.Generator().manual_seed(0))
        x = (x - x.mean(0)) / (x - x.mean(0)).std()
        start = time.perf_counter()
        d = local_pca_dimension(x[:20000]).float()
        print(name, n, d.median().item(), d.quantile(0.1).item(), d.quantile(0.9).item(),
              f"{time.perf_counter() - start:.2f}s", flush=True)
