"""summary.html in headless Chromium: every card renders with its chart, offline, and fits A4 (issue 15).

The page is written from a seeded customer table (no pipeline run needed), opened from disk with every
network request recorded, and checked as a reader sees it: one card per segment, every image decoded,
nothing fetched but the page itself, no card wider than the page. A screenshot of the whole page goes to
``reports/ui/summary.png``, and the A4 print (PDF) must keep each card on one page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seglib import summary

pytestmark = pytest.mark.ui


def _customers(n: int = 600, k: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    seg = np.arange(n) % k + 1
    customers = pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)],
        "recency_days": rng.integers(1, 90, n) + 250.0 * (seg % 3 == 0),
        "frequency": rng.integers(1, 4, n) + 5.0 * (seg % 2 == 1),
        "monetary": rng.gamma(2.0, 150.0, n) * np.where(seg <= 2, 4.0, 1.0),
        "avg_basket_value": rng.gamma(2.0, 50.0, n),
        "promo_share": rng.random(n) * 0.4,
        "programme_Payback": (rng.random(n) < np.where(seg == 4, 0.9, 0.1)).astype(float),
        "age": rng.normal(40, 10, n),
        "gender_female": (rng.random(n) < 0.5).astype(float),
    })
    return customers, pd.Series(seg, index=customers.index)


@pytest.fixture(scope="module")
def summary_page(tmp_path_factory):
    customers, seg = _customers()
    cards = summary.segment_cards(customers, seg, stability={1: 0.9, 2: 0.6, 3: 0.3}, currency="EUR")
    return summary.write_summary(tmp_path_factory.mktemp("summary") / "summary.html", cards), cards


def test_summary_page_renders_offline(page, summary_page, artifacts):
    path, cards = summary_page
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert page.locator("section.card").count() == len(cards)
    for card in cards:
        section = page.locator(f"#segment-{card['segment']}")
        assert card["name"] in section.inner_text()
        assert f"{card['customers']:,} ({card['customer_share']:.1%})" in section.inner_text()
    decoded = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert len(decoded) == len(cards) + 1 and all(decoded)
    alts = page.evaluate("[...document.images].map(i => i.alt)")
    assert all(len(a) > 10 for a in alts)
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"]  # nothing overflows sideways
    page.screenshot(path=str(artifacts / "summary.png"), full_page=True)
    assert (artifacts / "summary.png").stat().st_size > 10_000


def test_summary_prints_on_a4_without_splitting_cards(page, summary_page, tmp_path):
    path, cards = summary_page
    page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
    page.goto(path.as_uri())
    page.emulate_media(media="print")
    # each card is shorter than an A4 page's printable height (297 mm - 2 x 12 mm margins, at 96 dpi)
    printable = (297 - 24) / 25.4 * 96
    heights = page.evaluate("[...document.querySelectorAll('section.card')].map(c => c.offsetHeight)")
    assert len(heights) == len(cards) and max(heights) < printable
    assert page.evaluate("document.documentElement.scrollWidth") <= 794
    pdf = tmp_path / "summary.pdf"
    page.pdf(path=str(pdf), format="A4", print_background=True)
    assert pdf.read_bytes().startswith(b"%PDF")
