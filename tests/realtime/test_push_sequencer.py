"""The delivery order of one connection, without a connection: each message once, in seq order per group."""
from chat.ordering import PushSequencer


def _seq(last=0, group="g"):
    sequencer = PushSequencer()
    sequencer.follow(group, last)
    return sequencer


def test_in_order_pushes_go_out_at_once():
    s = _seq()
    assert [s.offer("g", n, f"m{n}") for n in (1, 2, 3)] == [["m1"], ["m2"], ["m3"]]
    assert not s.has_gap("g") and s.last("g") == 3


def test_an_early_push_is_held_until_the_one_before_it_comes():
    s = _seq()
    assert s.offer("g", 2, "m2") == [] and s.offer("g", 3, "m3") == []
    assert s.has_gap("g")
    assert s.offer("g", 1, "m1") == ["m1", "m2", "m3"]
    assert not s.has_gap("g")


def test_a_fill_of_the_missing_seqs_alone_frees_the_held_ones_between_them():
    s = _seq(last=3)
    s.offer("g", 5, "m5"), s.offer("g", 7, "m7")
    assert s.fill("g", [(4, "m4"), (6, "m6")]) == ["m4", "m5", "m6", "m7"]
    assert not s.has_gap("g") and s.last("g") == 7


def test_a_gap_is_as_old_as_its_longest_held_push_and_one_closed_by_its_push_does_not_count():
    s = _seq()
    assert s.held_since("g") is None
    s.offer("g", 2, "m2", now=10.0)
    s.offer("g", 3, "m3", now=10.1)
    assert s.held_since("g") == 10.0
    assert s.offer("g", 1, "m1", now=10.4) == ["m1", "m2", "m3"]
    s.offer("g", 5, "m5", now=10.5)  # a new gap, opened after the first closed
    assert s.held_since("g") == 10.5
    assert s.offer("g", 4, "m4") == ["m4", "m5"] and s.held_since("g") is None


def test_repeats_and_seqs_the_client_syncs_are_dropped():
    s = _seq(last=5)
    assert s.offer("g", 5, "m5") == [] and s.offer("g", 4, "m4") == []
    assert s.offer("g", 6, "m6") == ["m6"] and s.offer("g", 6, "m6") == []


def test_a_group_not_followed_gets_nothing():
    s = _seq()
    assert s.offer("other", 1, "x") == []
    s.forget("g")
    assert s.offer("g", 1, "m1") == [] and not s.follows("g")


def test_the_database_fills_a_gap_and_frees_what_was_held():
    s = _seq()
    s.offer("g", 4, "m4")
    assert s.fill("g", [(1, "m1"), (2, "m2"), (3, "m3")]) == ["m1", "m2", "m3", "m4"]
    assert not s.has_gap("g") and s.last("g") == 4


def test_a_fill_overtaken_by_live_pushes_sends_nothing_twice():
    s = _seq()
    s.offer("g", 3, "m3")
    assert s.offer("g", 1, "m1") == ["m1"]  # arrived while the database was being read
    assert s.fill("g", [(1, "m1"), (2, "m2"), (3, "m3")]) == ["m2", "m3"]
    assert s.offer("g", 3, "m3") == []


def test_giving_up_on_a_gap_drops_only_the_held_pushes():
    s = _seq()
    s.offer("g", 3, "m3")
    s.drop_held("g")
    assert not s.has_gap("g") and s.last("g") == 0
    assert s.offer("g", 1, "m1") == ["m1"]


def test_groups_are_ordered_apart():
    s = _seq()
    s.follow("h", 10)
    assert s.offer("g", 2, "g2") == [] and s.offer("h", 11, "h11") == ["h11"]
    assert s.offer("g", 1, "g1") == ["g1", "g2"]
