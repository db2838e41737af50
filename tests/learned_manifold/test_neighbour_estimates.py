"""`learned_manifold.neighbour_estimates`: its public names are those `learned_manifold.neighbour_check` uses."""

import ast
import inspect

import learned_manifold.neighbour_check as neighbour_check
import learned_manifold.neighbour_estimates as neighbour_estimates


def test_every_name_the_neighbour_check_imports_is_public_and_documented():
    """A name imported from another module is that module's public API: in its ``__all__``, with a docstring and
    type hints on its arguments and result (reviewer s36: ``compare`` and ``linear_denoiser`` were imported but not
    listed)."""
    tree = ast.parse(inspect.getsource(neighbour_check))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "neighbour_estimates" for alias in node.names}
    assert imported and imported <= set(neighbour_estimates.__all__)
    for name in neighbour_estimates.__all__:
        value = getattr(neighbour_estimates, name)
        if callable(value) and not isinstance(value, type):
            assert value.__doc__ and "return" in inspect.get_annotations(value), name
