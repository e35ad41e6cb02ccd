"""Stable ids across reclustering (ray_ncut.stable_ids): the matching against brute force and
hand-worked cases. No Ray."""

import itertools

import numpy as np
import pytest

from ray_ncut.stable_ids import churn, match_clusters


def brute_force_overlap(previous, current, previous_ids, k):
    """The largest total overlap of any one-to-one pairing of previous ids and new clusters."""
    table = {(i, j): int(((previous == i) & (current == j)).sum()) for i in previous_ids for j in range(k)}
    best = 0
    small, large = (previous_ids, range(k)) if len(previous_ids) <= k else (range(k), previous_ids)
    for chosen in itertools.permutations(large, len(small)):
        pairs = zip(small, chosen) if len(previous_ids) <= k else zip(chosen, small)
        best = max(best, sum(table[(i, j)] for i, j in pairs))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_the_matching_overlap_is_the_brute_force_maximum(seed):
    rng = np.random.default_rng(seed)
    n_prev, k = rng.integers(2, 6), rng.integers(2, 6)
    previous_ids = sorted(rng.choice(20, n_prev, replace=False).tolist())
    previous = rng.choice(previous_ids, 300)
    current = rng.integers(0, k, 300)
    m = match_clusters(previous, current, k, previous_ids, next_id=20, min_share=0.0)
    got = sum(int(((previous == i) & (current == j)).sum()) for j, i in m.matched.items())
    assert got == brute_force_overlap(previous, current, previous_ids, k)


def test_a_relabelled_partition_keeps_every_id_and_has_no_churn():
    previous = np.repeat([7, 3, 11], 50)
    current = np.repeat([2, 0, 1], 50)  # the same partition, numbered differently by the new model
    m = match_clusters(previous, current, 3, [3, 7, 11], next_id=12)
    assert m.ids.tolist() == [3, 11, 7] and m.new == [] and m.vanished == [] and m.next_id == 12
    assert churn(previous, m.ids[current]) == 0.0


def test_a_split_gets_one_new_id_and_a_merge_leaves_one_vanished():
    previous = np.repeat([0, 1], [100, 60])
    current = np.repeat([0, 1, 2], [70, 30, 60])  # previous 0 split into new 0 (70) and new 1 (30)
    m = match_clusters(previous, current, 3, [0, 1], next_id=5)
    assert m.ids.tolist() == [0, 5, 1] and m.new == [5] and m.next_id == 6
    assert churn(previous, m.ids[current]) == pytest.approx(30 / 160)

    merged = match_clusters(previous, np.zeros(160, np.int64), 1, [0, 1], next_id=5)
    assert merged.ids.tolist() == [0] and merged.vanished == [1] and merged.new == []


def test_a_new_cluster_without_shared_rows_and_a_minority_pairing_get_fresh_ids():
    # new cluster 1 keeps id 9 (40 of its 50 rows carried it); new cluster 2 holds no shared row
    previous = np.repeat([4, 4, 9], [50, 10, 40])
    current = np.repeat([0, 1, 1], [50, 10, 40])
    m = match_clusters(previous, current, 3, [4, 9], next_id=10)
    assert m.ids.tolist() == [4, 9, 10] and m.new == [10]

    # the optimal pairing gives id 9 to new cluster 1, but only 10 of its 40 rows carried it
    previous = np.repeat([4, 9, 4], [40, 10, 30])
    current = np.repeat([0, 1, 1], [40, 10, 30])
    minority = match_clusters(previous, current, 2, [4, 9], next_id=10)
    assert minority.ids.tolist() == [4, 10] and minority.vanished == [9]


def test_ids_are_never_reused_and_bad_input_is_named():
    m = match_clusters(np.array([0, 1]), np.array([0, 0]), 2, [0, 1, 2], next_id=8)
    assert m.ids.tolist() == [0, 8] and m.vanished == [1, 2]  # 2 held no shared row: vanished too
    with pytest.raises(ValueError, match="next_id=2 should exceed every previous id"):
        match_clusters(np.array([0]), np.array([0]), 1, [0, 2], next_id=2)
    with pytest.raises(ValueError, match="previous holds id 5, not among previous_ids"):
        match_clusters(np.array([5]), np.array([0]), 1, [0], next_id=6)
    with pytest.raises(ValueError, match="current holds cluster 3, outside 0..1"):
        match_clusters(np.array([0]), np.array([3]), 2, [0], next_id=1)
