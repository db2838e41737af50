"""learned-manifold: learn the Riemannian geometry of a data set and optimise on it with geoopt."""

__all__: list[str] = []
