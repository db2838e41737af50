"""Speed and memory benchmarks of learned-manifold; run each as ``python -m benchmarks.NAME`` (see README.md)."""

__all__: list[str] = []
