"""Pairwise constraints: the file format, and KCL moving a labelling the way the pairs ask."""

import numpy as np
import pytest

from ray_ncut import NeuralCut
from ray_ncut.constraints import read_constraints
from ray_ncut.metrics import accuracy


def _four_blobs(seed=0, n=2000):
    """Blobs at the corners of a 6 x 3 rectangle: the cut splits left | right."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [6, 0], [0, 3], [6, 3]], float)
    g = rng.integers(0, 4, n)
    return centres[g] + rng.normal(0, 0.8, (n, 2)), g % 2, g // 2  # X, left/right, bottom/top


def test_constraints_turn_the_cut_from_left_right_to_top_bottom():
    X, left_right, top_bottom = _four_blobs()
    rng = np.random.default_rng(1)
    bottom, top = np.flatnonzero(top_bottom == 0), np.flatnonzero(top_bottom == 1)
    pairs = []
    for _ in range(100):
        pairs += [[rng.choice(bottom), rng.choice(bottom), 1], [rng.choice(top), rng.choice(top), 1],
                  [rng.choice(bottom), rng.choice(top), 0]]
    params = {"steps": 300, "hidden": (64, 64), "batch_size": 500, "scaling": "none", "kcl_weight": 3.0, "random_state": 0}
    free = NeuralCut(2, **params).fit(X).labels_
    guided = NeuralCut(2, **params).fit(X, constraints=np.array(pairs)).labels_
    assert accuracy(left_right, free) > 0.95
    assert accuracy(top_bottom, guided) > 0.9


@pytest.mark.parametrize(
    "constraints, match",
    [
        (np.array([[0, 1]]), r"shape \(n_pairs, 3\)"),
        (np.array([[0, 5000, 1]]), "row 5000"),
        (np.array([[0, 1, 2]]), "got 2"),
        (np.array([[0.0, 1.0, 1.0]]), "integers"),
    ],
)
def test_bad_constraints_name_the_value(constraints, match):
    X, _, _ = _four_blobs(n=200)
    with pytest.raises(ValueError, match=match):
        NeuralCut(2, steps=1).fit(X, constraints=constraints)


def test_constraints_file_round_trip(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("id_a,id_b,link\n7,9,must\na:1,a:2,cannot-link\n3,4,0\n")
    c = read_constraints(str(f))
    assert c.id_a.tolist() == ["7", "a:1", "3"] and c.must.tolist() == [True, False, False]
    first, second, similar = c.index_into(["9", "3", "a:2", "7", "a:1", "4"])
    assert first.tolist() == [3, 4, 1] and second.tolist() == [0, 2, 5] and similar.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="1 id.*not found.*'4'"):
        c.index_into(["7", "9", "a:1", "a:2", "3"])


@pytest.mark.parametrize(
    "text, match",
    [("a,b,link\n1,2,must\n", r"missing column\(s\) \['id_a', 'id_b'\]"),
     ("id_a,id_b,link\n1,2,maybe\n", "line 2.*'maybe'"),
     ("id_a,id_b,link\n", "no pairs")],
)
def test_bad_constraints_file_is_one_clear_error(tmp_path, text, match):
    f = tmp_path / "c.csv"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_constraints(str(f))


def test_missing_constraints_file():
    with pytest.raises(ValueError, match="not found: /nope.csv"):
        read_constraints("/nope.csv")
