"""What produces a learned-manifold model: data, bandwidth samplers, losses, trainer and the CLI."""

__all__: list[str] = []
