"""A folder given where a data file is expected, and a file where a folder of images is expected, raise the
standard exception of that mistake (``IsADirectoryError`` / ``NotADirectoryError``) naming the path; each is also
the ``ValueError`` these readers raised before, so existing ``except ValueError`` clauses still catch it (tester E,
s33: ``open_npy`` on a folder said the path "does not exist")."""

import numpy as np
import pytest

from learned_manifold_training.data.idx import read_idx
from learned_manifold_training.data.images import load_image_folder
from learned_manifold_training.data.readers import read_file
from learned_manifold_training.data.stream import open_npy


def _read_file(path):
    return read_file(path, f"data file '{path}'")


@pytest.mark.parametrize("reader", [_read_file, open_npy, read_idx], ids=["read_file", "open_npy", "read_idx"])
def test_a_folder_given_as_a_data_file_is_an_is_a_directory_error_naming_it(tmp_path, reader):
    folder = tmp_path / "points.npy"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="points.npy.*is a directory") as caught:
        reader(folder)
    assert isinstance(caught.value, ValueError)


def test_a_file_given_as_an_image_folder_is_a_not_a_directory_error_naming_it(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, np.zeros((4, 8, 8), np.float32))
    with pytest.raises(NotADirectoryError, match="images.npy.*is not a folder") as caught:
        load_image_folder(path)
    assert isinstance(caught.value, ValueError)
