"""The process-wide index cache shared by the stream, energy-plane and blob indexes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_emd.cache import ProcessCache


def test_one_build_per_key_while_threads_wait():
    cache: ProcessCache[np.ndarray] = ProcessCache()
    builds = []

    def build():
        builds.append(1)
        time.sleep(0.05)
        return np.zeros(4)

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("k", build)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(got) == 8 and all(g is got[0] for g in got)


def test_a_failed_build_leaves_nothing_and_is_tried_again():
    cache: ProcessCache[np.ndarray] = ProcessCache()

    def broken():
        raise ValueError("damaged")

    with pytest.raises(ValueError, match="damaged"):
        cache.get("k", broken)
    assert len(cache) == 0
    assert cache.get("k", lambda: np.ones(2)).sum() == 2


def test_least_recently_used_go_past_the_budget_or_count():
    cache: ProcessCache[np.ndarray] = ProcessCache(budget=100)
    cache.get("a", lambda: np.zeros(40, np.uint8))
    cache.get("b", lambda: np.zeros(40, np.uint8))
    cache.get("a", lambda: None)  # used again: "b" is now the oldest
    cache.get("c", lambda: np.zeros(40, np.uint8))
    assert [v.size for v in cache.values()] == [40, 40] and len(cache) == 2
    assert cache.get("b", lambda: np.zeros(1)).size == 1  # "b" went
    big = ProcessCache(budget=10)
    assert big.get("huge", lambda: np.zeros(1000, np.uint8)).size == 1000  # newest stays
    counted: ProcessCache[int] = ProcessCache(max_items=2)
    for k in "xyz":
        counted.get(k, lambda k=k: ord(k))
    assert counted.values() == [ord("y"), ord("z")]
    counted.clear()
    assert len(counted) == 0
