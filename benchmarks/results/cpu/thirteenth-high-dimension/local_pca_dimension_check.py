import torch, time
from learned_manifold_training.data import Sphere, SwissRoll, Torus
from learned_manifold_training.input_choices import local_pca_dimension
torch.set_num_threads(1)
for name, man in [("S2", Sphere(2, 64)), ("S4", Sphere(4,64)), ("S8", Sphere(8, 64)), ("S12", Sphere(12, 64)), ("S16", Sphere(16, 64)), ("S24", Sphere(24, 64)), ("roll", SwissRoll(10)), ("torus", Torus(3))]:
    for n in (1000, 10000, 100000):
        x = man.sample(n, generator=torch.Generator().manual_seed(0))
        x = (x - x.mean(0)); x = x / x.std()
        t = time.perf_counter()
        d = local_pca_dimension(x[:20000]).float()
        print(name, n, d.median().item(), d.quantile(0.1).item(), d.quantile(0.9).item(), f"{time.perf_counter()-t:.2f}s", flush=True)
