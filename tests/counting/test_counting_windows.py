"""Window and minute aggregates are absolute, versioned rows: re-emits and restarts never add up."""

from __future__ import annotations

from counting.lines import CrossingEvent
from counting.windows import CrossingWindows, Labels, ZoneMinutes
from counting.zones import ZoneEvent

LABELS = Labels("cam", "yolo", "1.0.0", "", "")


def _counted_at(ts_ms: int) -> tuple[int, int]:
    """(frame seq, capture time) of the frame counted at ``ts_ms``: one frame every 100 ms."""
    return ts_ms // 100, ts_ms


def _crossing(ts_ms: int, direction: str = "in") -> CrossingEvent:
    return CrossingEvent(frame_seq=ts_ms // 100, capture_ts_ms=ts_ms, line="L", direction=direction, track_id=1,
                         class_id=0, class_name="person")


def test_crossings_in_one_window_are_emitted_as_a_growing_absolute_count():
    windows = CrossingWindows(60)
    first = windows.add(*_counted_at(1_000), [_crossing(1_000)], LABELS, now_ms=0)
    second = windows.add(*_counted_at(2_000), [_crossing(2_000)], LABELS, now_ms=1)
    assert [r["count"] for r in first + second] == [1, 2]
    assert first[0]["window_start_ms"] == second[0]["window_start_ms"] == 0


def test_window_totals_survive_a_state_round_trip():
    windows = CrossingWindows(60)
    windows.add(*_counted_at(1_000), [_crossing(1_000)], LABELS, now_ms=0)
    restored = CrossingWindows(60, state=windows.to_state())
    assert restored.add(*_counted_at(3_000), [_crossing(3_000)], LABELS, now_ms=0)[0]["count"] == 2


def test_windows_too_old_to_change_are_forgotten():
    windows = CrossingWindows(60, open_windows=1)
    windows.add(*_counted_at(1_000), [_crossing(1_000)], LABELS, now_ms=0)
    windows.close_old(capture_ts_ms=200_000)
    assert windows.to_state()["totals"] == {}


def test_a_crossing_confirmed_after_its_window_closed_counts_in_the_oldest_open_window():
    windows = CrossingWindows(60, open_windows=1)
    windows.add(*_counted_at(1_000), [_crossing(1_000)], LABELS, now_ms=0)
    windows.close_old(capture_ts_ms=130_000)  # window 0 closes with count 1; windows from 60 s on stay open
    late = windows.add(1_310, 131_000, [_crossing(59_000)], LABELS, now_ms=1)
    assert [(r["window_start_ms"], r["count"]) for r in late] == [(60_000, 1)]


def test_closed_windows_stay_closed_after_a_restore_and_a_frame_whose_clock_went_back():
    windows = CrossingWindows(60, open_windows=1)
    windows.close_old(capture_ts_ms=130_000)
    restored = CrossingWindows(60, open_windows=1, state=windows.to_state())
    restored.close_old(capture_ts_ms=70_000)
    late = restored.add(700, 70_000, [_crossing(1_000)], LABELS, now_ms=0)
    assert [r["window_start_ms"] for r in late] == [60_000]


def test_window_totals_saved_by_the_previous_release_are_restored():
    counted = CrossingWindows(60)
    counted.add(*_counted_at(1_000), [_crossing(1_000)], LABELS, now_ms=0)
    previous_release_state = counted.to_state()["totals"]  # it saved the totals mapping alone
    restored = CrossingWindows(60, state=previous_release_state)
    assert restored.add(*_counted_at(2_000), [_crossing(2_000)], LABELS, now_ms=0)[0]["count"] == 2


def test_zone_minutes_count_frames_occupancy_and_dwell_and_close_the_minute_on_rollover():
    minutes = ZoneMinutes(emit_every=1000)
    minutes.update(10, 1_000, {"yard": {"person": 2}}, [], LABELS, now_ms=0)
    exit_event = ZoneEvent(frame_seq=20, capture_ts_ms=2_000, zone="yard", kind="exit", track_id=1, class_id=0,
                           class_name="person", dwell_ms=1_500)
    moved = minutes.update(20, 2_000, {"yard": {"person": 1}}, [exit_event], LABELS, now_ms=0)
    assert moved[0]["frames"] == 2 and moved[0]["exits"] == 1 and moved[0]["dwell_ms_sum"] == 1_500
    rollover = minutes.update(610, 61_000, {"yard": {"person": 0}}, [], LABELS, now_ms=0)
    final = [r for r in rollover if r["minute_ms"] == 0]
    assert final == [{**LABELS.as_fields(), "zone": "yard", "class_name": "person", "minute_ms": 0, "frames": 2,
                      "max_occupancy": 2, "occupancy_sum": 3, "entries": 0, "exits": 1, "dwell_ms_sum": 1_500,
                      "last_frame_seq": 20, "last_capture_ts_ms": 2_000, "updated_ms": 0}]


def test_a_window_row_names_the_counted_frame_that_confirmed_its_latest_crossing():
    windows = CrossingWindows(60)
    windows.add(*_counted_at(1_000), [_crossing(1_000)], LABELS, now_ms=0)
    later = windows.add(35, 3_500, [_crossing(2_000)], LABELS, now_ms=1)  # crossing started at 2 s, confirmed at 3.5
    assert [(r["count"], r["last_frame_seq"], r["last_capture_ts_ms"]) for r in later] == [(2, 35, 3_500)]


def test_a_zone_minute_row_names_the_latest_frame_counted_into_it_not_the_frame_that_closed_the_minute():
    minutes = ZoneMinutes(emit_every=1)
    current = minutes.update(10, 1_000, {"yard": {"person": 2}}, [], LABELS, now_ms=0)
    minutes.update(20, 2_000, {"yard": {"person": 1}}, [], LABELS, now_ms=0)
    rollover = minutes.update(610, 61_000, {"yard": {"person": 0}}, [], LABELS, now_ms=0)
    assert [(r["minute_ms"], r["last_frame_seq"], r["last_capture_ts_ms"]) for r in current + rollover] == [
        (0, 10, 1_000), (0, 20, 2_000), (60_000, 610, 61_000)]


def test_zone_minutes_saved_by_the_previous_release_restore_with_their_last_frame_unknown():
    minutes = ZoneMinutes(emit_every=1000)
    minutes.update(10, 1_000, {"yard": {"person": 2}}, [], LABELS, now_ms=0)
    state = minutes.to_state()
    previous_release_state = {**state, "stats": {key: {name: value for name, value in stats.items()
                                                       if not name.startswith("last_")}
                                                 for key, stats in state["stats"].items()}}
    restored = ZoneMinutes(emit_every=1000, state=previous_release_state)
    final = restored.update(610, 61_000, {}, [], LABELS, now_ms=0)
    assert [(r["frames"], r["last_frame_seq"], r["last_capture_ts_ms"]) for r in final] == [(1, -1, -1)]


def test_the_end_of_a_stream_emits_the_open_minute_with_its_last_exits_and_no_extra_frame():
    minutes = ZoneMinutes(emit_every=1000)
    minutes.update(10, 1_000, {"yard": {"person": 2}}, [], LABELS, now_ms=0)
    minutes.update(20, 2_000, {"yard": {"person": 2}}, [], LABELS, now_ms=0)
    exits = [ZoneEvent(frame_seq=20, capture_ts_ms=2_000, zone="yard", kind="exit", track_id=t, class_id=0,
                       class_name="person", dwell_ms=1_000) for t in (1, 2)]
    ended = minutes.end(exits, LABELS, now_ms=5)
    assert [(r["minute_ms"], r["frames"], r["occupancy_sum"], r["exits"], r["dwell_ms_sum"], r["last_frame_seq"])
            for r in ended] == [(0, 2, 4, 2, 2_000, 20)]


def test_the_end_of_a_stream_that_counted_no_frame_emits_nothing():
    assert ZoneMinutes().end([], LABELS, now_ms=0) == []
