"""bench/stats.py: the quantiles every benchmark reads from the worker's Prometheus histograms."""

from __future__ import annotations

import math

from bench.stats import highest_bucket, histogram_quantile, histograms_by

H = "fanout_event_handling_seconds"


def scraped(counts: dict[str, list[float]]) -> dict[str, float]:
    """Cumulative bucket counts (le 0.1, 1, +Inf) per event type, as a scrape names them."""
    out = {}
    for kind, cumulative in counts.items():
        for le, count in zip(("0.1", "1.0", "+Inf"), cumulative, strict=True):
            out[f'{H}_bucket{{le="{le}",type="{kind}"}}'] = count
    out[f"{H}_count"] = 0.0  # not a bucket: left out
    return out


def test_histograms_split_by_a_label_or_summed_into_one() -> None:
    scrape = scraped({"PostCreated": [8, 10, 10], "follows": [0, 4, 5]})
    by_type = histograms_by(scrape, H, "type")
    assert sorted(by_type) == ["PostCreated", "follows"]
    assert by_type["follows"] == {f'{H}_bucket{{le="0.1"}}': 0, f'{H}_bucket{{le="1.0"}}': 4,
                                  f'{H}_bucket{{le="+Inf"}}': 5}
    assert histograms_by(scrape, H, None)[""][f'{H}_bucket{{le="+Inf"}}'] == 15


def test_quantiles_count_only_what_was_observed_between_two_scrapes() -> None:
    before = histograms_by(scraped({"PostCreated": [8, 10, 10]}), H, "type")["PostCreated"]
    after = histograms_by(scraped({"PostCreated": [8, 20, 20]}), H, "type")["PostCreated"]
    assert math.isclose(histogram_quantile(after, before, H, 0.5), 0.55)  # all ten new ones in (0.1, 1]
    assert highest_bucket(after, before, H) == 1.0
    assert math.isnan(histogram_quantile(before, before, H, 0.5))  # nothing observed in between
