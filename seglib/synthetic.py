"""Synthetic retail transactions with planted customer segments.

The generator writes a transaction log in the original schema (``COLUMNS``) whose customers belong to
K planted *archetypes* (``ARCHETYPES``): groups that differ in age, spend per line, basket size, visit
frequency, recency and tenure, promotion affinity, discount programmes, store loyalty and gender mix.
The groups overlap and every quantity is noisy, so a segmentation has something to find but no column
gives the answer away. The segment of every customer is returned (and written) as the truth, so the
quality of a segmentation is measured as agreement with it (e.g. the adjusted Rand index).

The log also reproduces the quirks of the real file at the rates measured on its sample (``QUIRK_RATES``):
``BBID_`` ids, empty and ``NANA`` dates of birth, implausible ages, empty genders and states,
``999999`` and empty pin codes, ``NONPROMO`` / ``LOCALPROMO`` / 4-digit / zero-padded 10-digit promo
codes, zero and negative prices, multi-valued ``discountUsed`` sets, descriptions containing commas,
``&`` and ``%``, and a few exact duplicate rows. ``docs/synthetic-data.md`` has the tables.

Everything is vectorised numpy (no Python loop per row or per customer) and driven by one seed: the
same parameters give the same bytes. Three entry points:

* :func:`make_transactions` returns the transactions and the truth as DataFrames of strings;
* :func:`write_dataset` writes them as ``<out>`` and ``<stem>_truth.csv`` (what ``seglib make-data`` runs);
* :func:`write_parts` writes a large log as ``part-00000.csv``, ... with bounded memory.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from seglib._files import atomic_path
from seglib.errors import ParameterError, check_float, check_int

__all__ = [
    "ARCHETYPES",
    "COLUMNS",
    "MAX_PERIODS",
    "MAX_SEGMENTS",
    "PROGRAMMES",
    "QUIRK_RATES",
    "Archetype",
    "make_transactions",
    "write_dataset",
    "write_parts",
]

logger = logging.getLogger(__name__)

#: The original schema, in file order.
COLUMNS = (
    "customerID", "DOB", "Gender", "State", "PinCode", "transactionDate", "store_code",
    "store_description", "till_no", "transaction_number_by_till", "promo_code", "promotion_description",
    "product_code", "product_description", "sale_price_after_promo", "discountUsed",
)  # fmt: skip

#: Discount programmes, in the order the real file lists them inside ``discountUsed`` (not alphabetical).
PROGRAMMES = ("FGShoppingFest", "BBSavingsClub", "FuturePrivilegeClub", "T24Club", "BBProfitClub", "Payback")

#: First and last day of the log (like the real file); ages are computed at the day after ``END``.
START, END = np.datetime64("2015-05-01"), np.datetime64("2017-06-30")
_N_DAYS = int((END - START).astype(int)) + 1

#: Target rates of the quirks, measured on ``cproducts_sample.csv`` (2,000 rows). Customer-level
#: quirks (DOB, age, gender, pin code, state) are drawn per customer, the others per line.
QUIRK_RATES = {
    "dob_empty": 0.028,
    "dob_nana": 0.013,
    "age_under_15": 0.001,
    "age_100_plus": 0.0035,
    "gender_empty": 0.092,
    "state_empty": 0.127,
    "state_other": 0.06,  # a state other than the home store's
    "state_junk": 0.003,  # "x", "DUMMY", "Other"
    "state_variant": 0.09,  # of the customers of a store whose state has a variant spelling (TAMILNADU)
    "pincode_999999": 0.0395,
    "pincode_empty": 0.0715,
    "price_zero": 0.0225,
    "price_negative": 0.001,
    "duplicate_row": 0.001,  # none in the 2,000-row sample; a few give de-duplication something to do
}
#: Shares of promotion lines that use ``LOCALPROMO`` and 4-digit codes (the rest: 10-digit codes).
_LOCALPROMO_SHARE, _SHORT_CODE_SHARE = 0.002, 0.08
#: Probability that a line uses a programme the customer belongs to (else it is left out; a line that
#: would use none lists them all). High, so that a one-line visit shows the customer's signature card.
_PROGRAMME_USE = 0.95


@dataclass(frozen=True)
class Archetype:
    """A planted customer segment.

    Attributes
    ----------
    name : str
        Slug written in the truth file's ``segment`` column.
    weight : float
        Relative size (normalised over the archetypes in use).
    age : tuple of float
        Mean and standard deviation of the age in years (clipped to 16-90 before the quirks).
    female : float
        Share of women among customers with a known gender.
    price : float
        Typical line price: products are chosen with a log-normal preference centred on it.
    basket : float
        Mean lines per transaction (1 + Poisson).
    visits : float
        Mean transactions of a repeat buyer (2 + negative binomial).
    one_time : float
        Share of one-time buyers (a single transaction).
    recency : tuple of float
        Minimum and mean extra days (exponential) from the last purchase to the end of the log.
    span : float
        Longest time in days between first and last purchase of a repeat buyer.
    promo : float
        Share of lines bought on promotion.
    programmes : tuple of float
        Probability of belonging to each programme of ``PROGRAMMES`` (every customer belongs to one at least).
    loyalty : float
        Share of later visits made at the customer's home store (the rest at a random other store). The
        first visit is always at home: the card, and so the customer's state and pin code, come from there.
    """

    name: str
    weight: float
    age: tuple[float, float]
    female: float
    price: float
    basket: float
    visits: float
    one_time: float
    recency: tuple[float, float]
    span: float
    promo: float
    programmes: tuple[float, float, float, float, float, float]
    loyalty: float


#: The planted segments; ``n_segments=K`` uses the first K. Programme order: FGShoppingFest,
#: BBSavingsClub, FuturePrivilegeClub, T24Club, BBProfitClub, Payback.
#:
#: Each archetype has a signature that a customer shows even on a single visit (a one-time buyer has no
#: frequency, tenure or store behaviour to show): an age band, a price level, a basket size, a promotion
#: affinity and, above all, a signature card held by ~97% of its customers and by few others (the first
#: six each have their own: FG, T24, BBP, FPC, BBS, Payback only; 7-10 combine two of them). Repeat
#: buyers are loyal to their home store (0.9 and more) except the weekend mall hoppers, whose many stores
#: are their signature. ``docs/synthetic-data.md`` explains the choices and measures how well segments
#: are recovered.
ARCHETYPES = (
    Archetype("young_bargain_hunters", 0.20, (22, 3), 0.35, 40, 2.2, 5, 0.20, (0, 60), 500, 0.65,
              (0.97, 0.02, 0.02, 0.03, 0.02, 0.05), 0.90),
    Archetype("busy_young_professionals", 0.15, (31, 4), 0.15, 350, 1.2, 4, 0.20, (0, 60), 400, 0.05,
              (0.02, 0.02, 0.03, 0.97, 0.02, 0.10), 0.90),
    Archetype("family_stock_uppers", 0.20, (40, 5), 0.50, 110, 4.0, 6, 0.12, (0, 40), 700, 0.25,
              (0.03, 0.03, 0.02, 0.03, 0.97, 0.10), 0.90),
    Archetype("affluent_occasional_buyers", 0.10, (50, 6), 0.20, 700, 2.0, 3, 0.45, (30, 200), 500, 0.03,
              (0.02, 0.02, 0.97, 0.05, 0.02, 0.05), 0.90),
    Archetype("loyal_seniors", 0.15, (64, 6), 0.30, 70, 2.5, 8, 0.08, (0, 30), 780, 0.20,
              (0.02, 0.97, 0.02, 0.02, 0.03, 0.20), 0.97),
    Archetype("occasional_passers_by", 0.20, (44, 11), 0.15, 150, 1.2, 2.5, 0.75, (150, 250), 200, 0.10,
              (0.00, 0.00, 0.00, 0.00, 0.00, 1.00), 0.90),
    Archetype("weekend_mall_hoppers", 0.10, (35, 5), 0.45, 220, 3.0, 6, 0.20, (0, 60), 600, 0.25,
              (0.95, 0.03, 0.03, 0.95, 0.03, 0.10), 0.15),
    Archetype("new_joiners", 0.10, (27, 4), 0.35, 90, 1.8, 3, 0.35, (0, 15), 90, 0.40,
              (0.03, 0.95, 0.02, 0.03, 0.03, 0.10), 0.85),
    Archetype("lapsed_regulars", 0.10, (54, 6), 0.30, 200, 2.5, 8, 0.05, (330, 100), 400, 0.20,
              (0.03, 0.03, 0.03, 0.03, 0.95, 0.95), 0.85),
    Archetype("premium_seniors", 0.10, (63, 5), 0.20, 500, 1.5, 5, 0.25, (0, 90), 700, 0.05,
              (0.03, 0.95, 0.95, 0.03, 0.03, 0.10), 0.90),
)  # fmt: skip
MAX_SEGMENTS = len(ARCHETYPES)

# ---------------------------------------------------------------------------------------------------
# The fixed catalogue: stores, products, promotions (invented; the same for every seed)

#: code, description, state, pin-code prefix, share of customers living near it
_STORES = (
    ("3127", "BB-NAGPUR-SITABULDI MAIN RD", "MAHARASHTRA", "440", 0.18),
    ("3354", "BB-PUNE-KOTHRUD, PAUD ROAD", "MAHARASHTRA", "411", 0.05),
    ("2786", "BB-MYSURU-HEBBAL RING ROAD", "KARNATAKA", "570", 0.20),
    ("4412", "BB-RANCHI-LALPUR CHOWK", "JHARKHAND", "834", 0.15),
    ("4571", "BB-COIMBATORE-GANDHIPURAM", "TAMIL NADU", "641", 0.15),
    ("2958", "BB-JALANDHAR-MODEL TOWN", "PUNJAB", "144", 0.11),
    ("3819", "BB-BHOPAL-ARERA COLONY", "MADHYA PRADESH", "462", 0.15),
)
_OTHER_STATES = ("DELHI", "UTTAR PRADESH", "WEST BENGAL", "RAJASTHAN", "GUJARAT", "BIHAR", "ORISSA", "KERALA")
_JUNK_STATES = ("x", "DUMMY", "Other")
_STATE_VARIANTS = {"TAMIL NADU": "TAMILNADU"}  # spelling used by some customers of that store

_KG = (("200g", 0.2), ("500g", 0.5), ("1Kg", 1.0), ("5kg", 4.6))
_LITRE = (("200ml", 0.22), ("500ml", 0.52), ("1L", 1.0), ("5L", 4.8))
_PACK = (("50g", 1.0), ("150g", 2.8), ("400g", 7.0))
_BOTTLE = (("75ml", 1.0), ("200ml", 2.4), ("400ml", 4.5))
_PIECES = (("1N", 1.0), ("5N", 5.0))
#: (sizes, product-code prefix, popularity, items with their price at size multiplier 1)
_PACKAGED = (
    (_KG, "108", 1.0, (
        ("DAILY ATTA WHOLE WHEAT", 48), ("BASMATI RICE PREMIUM", 115), ("TUR DAL UNPOLISHED", 125),
        ("RAVA/SUJI", 40), ("SUGAR REFINED", 42), ("POHA THICK", 50), ("TEA DUST STRONG", 300),
        ("SPICE JEERA WHOLE", 320), ("SPICE TURMERIC POW", 190), ("MILKPOW DAIRY WHITENER", 380))),
    (_LITRE, "1000", 1.0, (
        ("GHEE PURE COW", 540), ("SUNFLOWER OIL REFINED", 135), ("FLOOR CLEANER PINE", 160))),
    (_PACK, "300", 1.5, (
        ("BISC CHOCO CREAM", 10), ("BISC MARIE LITE", 10), ("NDL MASALA", 12), ("NAMKEEN BHUJIA", 11),
        ("CHIPS SALTED", 10), ("JUICE ORANGE", 30), ("KETCHUP TOMATO CHILLI", 22))),
    (_BOTTLE, "1000", 1.0, (
        ("SOAP OIL CLEAR & GLOW", 35), ("SHAMPOO SILK SHINE", 60), ("TOOTHPASTE HERBAL", 40),
        ("BODY LTN ALOE & CUCUMBER", 90), ("FACE WASH NEEM", 75), ("HAIR OIL COCONUT", 45))),
    (_PIECES, "300", 1.5, (
        ("CANDY MANGO", 1), ("TOFFEE ECLAIRS", 1), ("SHAMPOO SACHET", 3), ("MATCHBOX", 2))),
)  # fmt: skip
_BRANDS = ("GOODHOME", "SUNVALLEY", "KRISPO", "VEDIKA", "NOVACARE", "CITYCHEF")
#: single-size household and home goods: (description, price)
_HOME = (
    ("DETERGENT POW LEMON 1Kg", 95), ("DISH BAR LEMON 200g", 20), ("GLASS TUMBLER SET 6PC", 299),
    ("CONTAINER SET 4PC", 399), ("LED BULB 9W B22", 149), ("STEEL BOTTLE 1L", 349),
    ("NON-STICK TAWA 28CM", 649), ("PRESSURE COOKER 5L", 1450), ("MIXER GRINDER 750W", 2999),
    ("BEDSHEET 100% COTTON, DOUBLE, FLORAL", 899), ("TOWEL BATH, 70X140, WHITE", 399),
    ("DINNER SET 24PC", 1899),
)  # fmt: skip
#: apparel is listed as style code, size, colour (hence the commas), 13-digit product codes
_APPAREL = (("HKF", 49), ("SCK", 99), ("KTS", 199), ("MSH", 899), ("LKT", 699), ("MJN", 1299), ("LDR", 1599),
            ("MBL", 2499))
_APPAREL_SIZES = ("S", "M", "L", "XL", "32", "34", "36", "40")
_COLOURS = ("NAVY", "CHARCOAL", "WHITE", "MAROON", "OLIVE", "BLACK")
#: loose goods sold by weight: price per kg; the line price has paise
_HOME_POPULARITY, _APPAREL_POPULARITY, _LOOSE_POPULARITY = 0.6, 1.0, 3.0
_LOOSE = (("ONION LOOSE", 30), ("POTATO LOOSE", 25), ("TOMATO LOOSE", 35), ("BANANA ROBUSTA LOOSE", 45),
          ("TUR DAL PREM LOOSE", 120), ("SUGAR LOOSE", 40))  # fmt: skip

#: 10-digit promotions: description, price factor after the promotion
_PROMOTIONS = (
    ("AZ 10% OFF SUPER SAVER CARD ASSORTED", 0.90), ("AZ 5% DISC MIN SHOP FESTIVE SALE", 0.95),
    ("IZ 6% DISC WED FOOD EXC", 0.94), ("AZ SHOP 2000 & GET 200 RS OFF PAYBACK", 0.90),
    ("HO 50 RS OFF BODY CARE REG AZ EX", 0.85), ("JB 50 % OFF KIDS WEAR FASHION AZ", 0.50),
    ("AZ B2G1 FLAT SNACKS ASSORTED", 0.67), ("IZ 1@10,2@25 RS OFF REG JUICES", 0.85),
    ("NZ 9 RS OFF ASSORTED FOOD", 0.92), ("AZ 3% OFF PRIVILEGE CARD AZ", 0.97),
    ("HO 40% OFF+VAT REG LADIES FASHION", 0.60), ("AZ 99 FLAT GLASS TUMBLERS/SETS REG EXC", 0.80),
    ("IZ 20 %DIS PHS TOOTHPASTE", 0.80), ("AZ SHOP 750 GET 150 RS OFF CMS", 0.85),
    ("AZ 7% OFF STAFF DISCOUNT", 0.93), ("IZ 15 RS OFF REG COOKING PASTA", 0.90),
    ("HO 5 %OFF STAPLES REG AZ", 0.95), ("NZ BUY 2 GET 1 NAMKEENS", 0.67),
)  # fmt: skip
#: share of promotion lines using the store's own "concept discount"
_CONCEPT_SHARE = 0.15


#: ages (years) covered by the DOB table, quirks included
_AGE_RANGE = (4, 113)
_PIN_SUFFIXES = 59  # pin codes are a store's 3-digit prefix + 001..059


@dataclass(frozen=True)
class _Catalogue:
    """Fixed lookup tables; the text ones are pyarrow arrays that the generator indexes (``take``)."""

    store_code: pa.Array
    store_description: pa.Array
    store_weight: np.ndarray
    states: pa.Array  # the stores' states, variants, other states, junk, ""
    store_state: np.ndarray  # index into ``states`` of each store's state
    pins: pa.Array  # per store 001..059, then "999999", ""
    product_code: pa.Array
    product_description: pa.Array
    product_price: np.ndarray  # per kg for loose goods
    product_loose: np.ndarray
    product_popularity: np.ndarray
    promo_code: pa.Array  # 0: NONPROMO, 1: LOCALPROMO, then 4-digit codes, then 10-digit codes
    promo_description: pa.Array
    promo_factor: np.ndarray
    n_short: int  # 4-digit codes
    n_general: int  # general 10-digit promotions (each store's concept discount follows)
    dates: pa.Array  # every day of the log
    dobs: pa.Array  # every birth date of _AGE_RANGE, then "", "NANA"
    discounts: pa.Array  # discountUsed text of each of the 64 programme sets (bit i: PROGRAMMES[i])
    cents: pa.Array  # "", ".01", ..., ".5", ..., ".99"


def _text(values) -> pa.Array:
    return pa.array(list(values), type=pa.large_string())


def _join(*parts) -> pa.Array:
    """Concatenate text arrays (or scalars) element-wise."""
    return pc.binary_join_element_wise(*parts, pa.scalar("", pa.large_string()))


def _unique_codes(rng, n, low, high, width=0) -> list[str]:
    """``n`` distinct random integers in [low, high) as strings, zero-padded to ``width``."""
    values = rng.choice(np.arange(low, high), size=n, replace=False)
    return [str(v).zfill(width) for v in np.sort(values)]


@cache
def _catalogue() -> _Catalogue:
    """Build the fixed catalogue (once; independent of the generator's seed)."""
    rng = np.random.default_rng(20150501)
    desc, price, prefix, pop = [], [], [], []
    for sizes, code_prefix, popularity, items in _PACKAGED:
        for item, base in items:
            for brand in rng.choice(_BRANDS, size=2, replace=False):
                for label, mult in sizes:
                    desc.append(f"{brand} {item} {label}")
                    price.append(float(np.ceil(base * mult)))
                    prefix.append(code_prefix)
                    pop.append(popularity)
    desc += [d for d, _ in _HOME]
    price += [float(p) for _, p in _HOME]
    prefix += ["1000"] * len(_HOME)
    pop += [_HOME_POPULARITY] * len(_HOME)
    for style, base in _APPAREL:
        for number in _unique_codes(rng, 3, 1000, 9999):
            size, colour = rng.choice(_APPAREL_SIZES), rng.choice(_COLOURS)
            desc.append(f"{style}-{number}-{rng.integers(100, 999)}-A-FF, {size}, {colour}")
            price.append(float(np.ceil(base * rng.choice([0.8, 1.0, 1.2]) / 10) * 10 - 1))
            prefix.append("1000000")
    pop += [_APPAREL_POPULARITY] * (len(desc) - len(pop))
    n_goods = len(desc)
    desc += [d for d, _ in _LOOSE]
    price += [float(p) for _, p in _LOOSE]
    prefix += ["108"] * len(_LOOSE)
    pop += [_LOOSE_POPULARITY] * len(_LOOSE)
    # product codes: 9 digits (108/300 + 6), 10 digits (1000 + 6), 13 digits (1000000 + 6)
    serials = _unique_codes(rng, len(desc), 0, 1_000_000, width=6)

    short = [(c, f"Ex{rng.integers(25, 51) * 10}") for c in _unique_codes(rng, 8, 4000, 5100)]
    concept = [(f"{d.split('-')[1][:3]} 5% OFF CONCEPT DISCOUNT {c}", 0.95) for c, d, *_ in _STORES]
    promos = list(_PROMOTIONS) + concept
    long_codes = _unique_codes(rng, len(promos), 850_000, 1_350_000, width=10)

    states = list(dict.fromkeys(s[2] for s in _STORES))
    states += list(_STATE_VARIANTS.values()) + list(_OTHER_STATES) + list(_JUNK_STATES) + [""]
    pins = [s[3] + str(j).zfill(3) for s in _STORES for j in range(1, _PIN_SUFFIXES + 1)]
    first_dob = END + 1 - np.timedelta64(round(_AGE_RANGE[1] * 365.25), "D")
    n_dobs = round((_AGE_RANGE[1] - _AGE_RANGE[0]) * 365.25)
    bits = (np.arange(64)[:, None] >> np.arange(len(PROGRAMMES))) & 1
    return _Catalogue(
        store_code=_text(s[0] for s in _STORES),
        store_description=_text(s[1] for s in _STORES),
        store_weight=np.array([s[4] for s in _STORES]) / sum(s[4] for s in _STORES),
        states=_text(states),
        store_state=np.array([states.index(s[2]) for s in _STORES]),
        pins=_text(pins + ["999999", ""]),
        product_code=_text(p + s for p, s in zip(prefix, serials)),
        product_description=_text(desc),
        product_price=np.array(price),
        product_loose=np.arange(len(desc)) >= n_goods,
        product_popularity=np.array(pop),
        promo_code=_text(["NONPROMO", "LOCALPROMO"] + [c for c, _ in short] + long_codes),
        promo_description=_text(["", "LOCALPROMO"] + [d for _, d in short] + [d for d, _ in promos]),
        promo_factor=np.array([1.0, 0.95] + [0.9] * len(short) + [f for _, f in promos]),
        n_short=len(short),
        n_general=len(_PROMOTIONS),
        dates=_text(np.datetime_as_string(START + np.arange(_N_DAYS), unit="D")),
        dobs=_text(list(np.datetime_as_string(first_dob + np.arange(n_dobs), unit="D")) + ["", "NANA"]),
        discounts=_text(",".join(p for p, b in zip(PROGRAMMES, row) if b) for row in bits),
        cents=_text([""] + [f".{c:02d}".rstrip("0") for c in range(1, 100)]),
    )


# ---------------------------------------------------------------------------------------------------
# Generation


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int; ParameterError unless it is an integer in [low, high]."""
    return check_int(name, value, minimum=low, maximum=high)


def _check_seed(random_state, *, spawnable: bool = False):
    """A numpy Generator (or, with ``spawnable``, a SeedSequence) from ``random_state``."""
    try:
        if spawnable:
            return np.random.SeedSequence(random_state)
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        expected = "None or a non-negative int" if spawnable else (
            "None, a non-negative int, a numpy SeedSequence or Generator"
        )
        raise ParameterError(f"random_state={random_state!r} is not valid; expected {expected}") from exc


def _params(archetypes) -> dict[str, np.ndarray]:
    """The archetypes' fields as arrays indexed by segment number."""
    names = [f.name for f in fields(Archetype) if f.name != "name"]
    return {f: np.array([getattr(a, f) for a in archetypes], dtype=float) for f in names}


def _choose_products(rng, price_level: float, size: int, spread: float = 0.6) -> np.ndarray:
    """Products bought by customers whose line prices centre on ``price_level`` (log-normal preference)."""
    cat = _catalogue()
    pref = cat.product_popularity * np.exp(
        -0.5 * ((np.log(cat.product_price) - np.log(price_level)) / spread) ** 2
    )
    return rng.choice(len(pref), size=size, p=pref / pref.sum())


def _price_text(cents: np.ndarray) -> pa.Array:
    """Format integer cents as ``72``, ``139.5``, ``0.01``, ``-72`` (exact: no float formatting)."""
    sign = _text(["", "-"]).take((cents < 0).astype(np.int8))
    whole = pa.array(np.abs(cents) // 100).cast(pa.large_string())
    return _join(sign, whole, _catalogue().cents.take(np.abs(cents) % 100))


def _column(table: pa.Array, index: np.ndarray) -> pd.Series:
    """The pandas string column ``table[index]``."""
    return pd.Series(table.take(index), dtype="str")


def _generate(n_customers: int, n_segments: int, rng: np.random.Generator, *, quirks: bool = True,
              id_start: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate (parameters already validated); ``id_start`` keeps ids of independent parts disjoint."""
    par = _params(ARCHETYPES[:n_segments])
    rate = QUIRK_RATES if quirks else dict.fromkeys(QUIRK_RATES, 0.0)
    n = n_customers

    # --- customers: segment, static fields (indices into the text tables), activity window
    seg = rng.choice(n_segments, size=n, p=par["weight"] / par["weight"].sum())
    people = _customers(rng, seg, par, rate, id_start)
    member = people["member"]

    one_time = rng.random(n) < par["one_time"][seg]
    extra = np.maximum(par["visits"][seg] - 2, 0)
    n_tx = np.where(one_time, 1, 2 + rng.negative_binomial(2, 2 / (2 + extra)))
    recency = par["recency"][seg, 0] + rng.exponential(np.maximum(par["recency"][seg, 1], 1e-9))
    last = np.clip(np.rint(_N_DAYS - 1 - recency), 0, _N_DAYS - 1).astype(np.int64)
    span = np.where(one_time, 0, np.rint(rng.uniform(0.2, 1.0, n) * par["span"][seg])).astype(np.int64)
    first = np.maximum(last - span, 0)

    # --- transactions: first and last visits at the window's ends, the others uniform inside it
    t_cust = np.repeat(np.arange(n), n_tx)
    pos = np.arange(len(t_cust)) - np.repeat(np.cumsum(n_tx) - n_tx, n_tx)
    lo, hi = first[t_cust], last[t_cust]
    day = np.where(pos == 0, hi, np.where(pos == 1, lo, rng.integers(lo, hi + 1)))
    order = np.lexsort((day, t_cust))  # each customer's visits in date order
    t_cust, day = t_cust[order], day[order]
    df = _lines(rng, people, t_cust, day, seg[t_cust], member[t_cust], par, rate, n_segments)
    names = _text(a.name for a in ARCHETYPES[:n_segments])
    truth = pd.DataFrame({"customerID": _column(people["customer_id"], np.arange(n)),
                          "segment": _column(names, seg)})
    return df, truth


#: Quarters of a log with periods: the last ``periods`` quarters up to the end of the log (2017Q2);
#: the log's first full quarter is 2015Q3, so at most 8.
MAX_PERIODS = 8
_LAST_QUARTER = "2017Q2"


def _generate_periods(n_customers: int, n_segments: int, rng: np.random.Generator, periods: int,
                      migration: float, *, quirks: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A log over ``periods`` quarters in which about ``migration`` of the customers change archetype
    between consecutive quarters, about ``migration / 2`` lapse and new customers join.

    A customer is active (buys at least once) in every quarter from the one they join to the one
    before they lapse: 1 + Poisson(visits / 3) visits per quarter on uniform days. A customer who
    changes archetype takes the new archetype's behaviour (price level, basket, promotions, store
    loyalty) and cards; age, gender, home store and pin code stay (they are the same person), and the
    new archetype is drawn by size and by how well the customer's age fits it. A customer active in a
    quarter buys 2 + Poisson((visits - 2) / 1.5) times in it.
    """
    par = _params(ARCHETYPES[:n_segments])
    rate = QUIRK_RATES if quirks else dict.fromkeys(QUIRK_RATES, 0.0)
    n, P, n_prog = n_customers, periods, len(PROGRAMMES)
    weight = par["weight"] / par["weight"].sum()
    seg0 = rng.choice(n_segments, size=n, p=weight)
    people = _customers(rng, seg0, par, rate, 0)

    # --- activity: join in quarter 0 (most) or later; lapse for good after any quarter
    late = min(0.5, (P - 1) * migration / 2)
    join = np.where(rng.random(n) < late, rng.integers(1, P, n) if P > 1 else 0, 0)
    lapse_at = np.full(n, P)  # first inactive quarter
    for p in range(1, P):  # one vectorised draw per quarter
        lapses = (lapse_at == P) & (join < p) & (rng.random(n) < migration / 2)
        lapse_at[lapses] = p
    lapse_at = np.maximum(lapse_at, join + 1)  # everyone buys in at least one quarter
    active = (np.arange(P) >= join[:, None]) & (np.arange(P) < lapse_at[:, None])

    # --- archetype per quarter: about `migration` of the customers move to another one, chosen by
    # size and by how well the customer's age fits it (people move to segments of their life stage)
    z = (people["age"][:, None] - par["age"][:, 0]) / par["age"][:, 1]
    fit = par["weight"] * (np.exp(-0.5 * z ** 2) + 1e-3)  # (customers, archetypes)
    seg = np.empty((n, P), dtype=np.int64)
    member = np.empty((n, P, n_prog), dtype=bool)
    seg[:, 0], member[:, 0] = seg0, people["member"]
    for p in range(1, P):
        moves = rng.random(n) < migration
        odds = fit.copy()
        odds[np.arange(n), seg[:, p - 1]] = 0  # another archetype
        cum = np.cumsum(odds, axis=1)
        target = (cum < rng.random(n)[:, None] * cum[:, -1:]).sum(axis=1)
        seg[:, p] = np.where(moves, np.minimum(target, n_segments - 1), seg[:, p - 1])
        cards = rng.random((n, n_prog)) < par["programmes"][seg[:, p]]
        none = ~cards.any(axis=1)
        cards[none, np.argmax(par["programmes"][seg[none, p]], axis=1)] = True
        member[:, p] = np.where(moves[:, None], cards, member[:, p - 1])

    # --- transactions of every active customer and quarter, in date order per customer
    quarters = pd.period_range(end=_LAST_QUARTER, periods=P, freq="Q")
    q_start = np.array([(q.start_time.to_datetime64() - START) // np.timedelta64(1, "D") for q in quarters])
    q_days = np.array([q.end_time.to_period("D").ordinal - q.start_time.to_period("D").ordinal + 1
                       for q in quarters])
    c_idx, p_idx = np.nonzero(active)  # customer-major order
    cp_seg = seg[c_idx, p_idx]
    n_tx = 2 + rng.poisson(np.maximum(par["visits"][cp_seg] - 2, 0) / 1.5)
    t_cust, t_p = np.repeat(c_idx, n_tx), np.repeat(p_idx, n_tx)
    day = q_start[t_p] + rng.integers(0, q_days[t_p])
    order = np.lexsort((day, t_cust))
    t_cust, t_p, day = t_cust[order], t_p[order], day[order]
    df = _lines(rng, people, t_cust, day, seg[t_cust, t_p], member[t_cust, t_p], par, rate, n_segments)
    names = _text(a.name for a in ARCHETYPES[:n_segments])
    labels = _text(str(q) for q in quarters)
    truth = pd.DataFrame({"customerID": _column(people["customer_id"], c_idx),
                          "period": _column(labels, p_idx), "segment": _column(names, cp_seg)})
    return df, truth


def _customers(rng, seg, par, rate, id_start) -> dict:
    """Static fields of the customers of archetypes ``seg`` (indices into the text tables)."""
    cat = _catalogue()
    n, n_states, n_stores = len(seg), len(cat.states), len(cat.store_weight)
    ids = 100_000 + 11 * id_start + np.cumsum(rng.integers(1, 11, size=n))  # parts: disjoint ranges
    age = np.clip(rng.normal(par["age"][seg, 0], par["age"][seg, 1]), 16, 90)
    u = rng.random(n)
    age = np.where(u < rate["age_under_15"], rng.uniform(_AGE_RANGE[0] + 1, 15, n), age)
    age = np.where(u > 1 - rate["age_100_plus"], rng.uniform(100, _AGE_RANGE[1] - 1, n), age)
    dob = round(_AGE_RANGE[1] * 365.25) - np.rint(age * 365.25).astype(np.int64)  # index into cat.dobs
    n_dobs = len(cat.dobs) - 2  # then "" and "NANA"
    u = rng.random(n)
    dob = np.where(u < rate["dob_empty"], n_dobs, np.where(u > 1 - rate["dob_nana"], n_dobs + 1, dob))
    gender = (rng.random(n) < par["female"][seg]).astype(np.int64)  # 0 male, 1 female, 2 empty
    gender[rng.random(n) < rate["gender_empty"]] = 2
    home = rng.choice(n_stores, size=n, p=cat.store_weight)
    state = cat.store_state[home]
    n_home, n_variants = len(set(cat.store_state)), len(_STATE_VARIANTS)
    for i, right in enumerate(_STATE_VARIANTS):
        variant = (state == cat.states.to_pylist().index(right)) & (rng.random(n) < rate["state_variant"])
        state = np.where(variant, n_home + i, state)
    u = rng.random(n)
    other = n_home + n_variants + rng.integers(0, len(_OTHER_STATES), n)
    state = np.where(u < rate["state_other"], other, state)
    junk = n_states - 1 - len(_JUNK_STATES) + rng.integers(0, len(_JUNK_STATES), n)
    state = np.where(u > 1 - rate["state_junk"], junk, state)
    state = np.where(rng.random(n) < rate["state_empty"], n_states - 1, state)
    pin = home * _PIN_SUFFIXES + rng.integers(0, _PIN_SUFFIXES, n)
    u = rng.random(n)
    pin = np.where(u < rate["pincode_999999"], len(cat.pins) - 2, pin)
    pin = np.where(u > 1 - rate["pincode_empty"], len(cat.pins) - 1, pin)
    member = rng.random((n, len(PROGRAMMES))) < par["programmes"][seg]
    none = ~member.any(axis=1)  # everyone holds a card: give the archetype's most likely programme
    member[none, np.argmax(par["programmes"][seg[none]], axis=1)] = True
    customer_id = _join(pa.scalar("BBID_", pa.large_string()), pa.array(ids).cast(pa.large_string()))
    return {"customer_id": customer_id, "dob": dob, "gender": gender, "home": home, "state": state,
            "pin": pin, "member": member, "age": age}


def _lines(rng, people, t_cust, day, t_seg, t_member, par, rate, n_segments) -> pd.DataFrame:
    """The log: transactions of customers ``t_cust`` (sorted, dates in order) on days ``day``, each
    made as archetype ``t_seg`` with programme cards ``t_member``."""
    cat = _catalogue()
    n_stores = len(cat.store_weight)
    home, dob, gender, state, pin = (people[k] for k in ("home", "dob", "gender", "state", "pin"))
    n_t = len(t_cust)
    first_visit = np.r_[True, t_cust[1:] != t_cust[:-1]]  # at the home store, where the card was issued
    other = (home[t_cust] + rng.integers(1, n_stores, n_t)) % n_stores
    at_home = first_visit | (rng.random(n_t) < par["loyalty"][t_seg])
    store = np.where(at_home, home[t_cust], other)
    till = pa.array(rng.integers(1, 21, n_t)).cast(pa.large_string())
    txn = pa.array(rng.integers(100, 100_000, n_t)).cast(pa.large_string())
    n_lines = 1 + rng.poisson(par["basket"][t_seg] - 1)

    # --- lines: product, promotion, price, programmes used
    l_tx = np.repeat(np.arange(n_t), n_lines)
    l_cust = t_cust[l_tx]
    l_seg = t_seg[l_tx]
    n_l = len(l_tx)
    product = np.empty(n_l, dtype=np.int64)
    for k in range(n_segments):  # one vectorised draw per archetype
        mask = l_seg == k
        product[mask] = _choose_products(rng, par["price"][k], int(mask.sum()))
    first_long = 2 + cat.n_short
    u = rng.random(n_l)
    promo = first_long + rng.integers(0, cat.n_general, n_l)
    promo = np.where(u < _CONCEPT_SHARE, first_long + cat.n_general + store[l_tx], promo)
    promo = np.where(u > 1 - _SHORT_CODE_SHARE, 2 + rng.integers(0, cat.n_short, n_l), promo)
    promo = np.where(u > 1 - _LOCALPROMO_SHARE, 1, promo)
    promo = np.where(rng.random(n_l) < par["promo"][l_seg], promo, 0)
    price = cat.product_price[product] * cat.promo_factor[promo]
    price = np.where(cat.product_loose[product], price * rng.uniform(0.25, 2.5, n_l), price)
    cents = np.rint(price * 100).astype(np.int64)
    u = rng.random(n_l)
    cents = np.where(u < rate["price_zero"], 0, np.where(u > 1 - rate["price_negative"], -cents, cents))
    use = t_member[l_tx] & (rng.random((n_l, len(PROGRAMMES)), dtype=np.float32) < _PROGRAMME_USE)
    empty = ~use.any(axis=1)
    use[empty] = t_member[l_tx[empty]]
    programmes = use @ (1 << np.arange(len(PROGRAMMES)))

    # --- rows (a few exact duplicates right after their original)
    rows = np.repeat(np.arange(n_l), 1 + (rng.random(n_l) < rate["duplicate_row"]))
    rt, rc = l_tx[rows], l_cust[rows]
    customer_id = people["customer_id"]
    return pd.DataFrame(
        {
            "customerID": _column(customer_id, rc),
            "DOB": _column(cat.dobs, dob[rc]),
            "Gender": _column(_text(["male", "female", ""]), gender[rc]),
            "State": _column(cat.states, state[rc]),
            "PinCode": _column(cat.pins, pin[rc]),
            "transactionDate": _column(cat.dates, day[rt]),
            "store_code": _column(cat.store_code, store[rt]),
            "store_description": _column(cat.store_description, store[rt]),
            "till_no": _column(till, rt),
            "transaction_number_by_till": _column(txn, rt),
            "promo_code": _column(cat.promo_code, promo[rows]),
            "promotion_description": _column(cat.promo_description, promo[rows]),
            "product_code": _column(cat.product_code, product[rows]),
            "product_description": _column(cat.product_description, product[rows]),
            "sale_price_after_promo": _column(_price_text(cents), rows),
            "discountUsed": _column(cat.discounts, programmes[rows]),
        }
    )


# ---------------------------------------------------------------------------------------------------
# Public API


def make_transactions(
    n_customers: int = 3000, n_segments: int = 6, random_state=None, *, quirks: bool = True,
    periods: int | None = None, migration: float = 0.1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate retail transactions with planted customer segments.

    Parameters
    ----------
    n_customers : int, default 3000
        Number of customers (>= 1). Each buys on average about 4 times, ~2.5 lines per visit (about 10
        rows per customer); about 30% are one-time buyers. 3,000 customers (~31k rows) keep every
        notebook fast; use :func:`write_parts` beyond a few hundred thousand customers.
    n_segments : int, default 6
        Number of planted segments K, from 2 to ``MAX_SEGMENTS`` (10); the first K ``ARCHETYPES`` are
        used. Segments 7-10 overlap more with the first six, so larger K is a harder task.
    random_state : int, numpy.random.SeedSequence, numpy.random.Generator or None
        Seed of everything random. An int gives reproducible data (the same seed, the same rows);
        None draws fresh entropy.
    quirks : bool, default True
        Reproduce the real file's dirty values (``QUIRK_RATES``). ``False`` gives clean data
        (valid DOBs, genders, pin codes and states, positive prices, no duplicate rows), handy for
        testing steps after cleaning; promo codes and multi-valued ``discountUsed`` stay, they are
        the schema, not dirt.
    periods : int, optional
        None (default): one planted segment per customer over the whole log (2015-05 to 2017-06).
        An int P from 1 to ``MAX_PERIODS`` (8): the transactions fall in the last P quarters of the log
        (up to 2017Q2) and customers move between archetypes from quarter to quarter (see
        ``migration``): data to test segment tracking (``seglib track``) on. Every customer active in
        a quarter buys 2 + Poisson((visits - 2) / 1.5) times in it.
    migration : float, default 0.1
        With ``periods``: the share of customers that move to another archetype (uniformly chosen)
        between consecutive quarters; about half as many lapse (buy no more), and new customers join
        in later quarters. 0.05-0.2 is a realistic quarterly churn between segments. Ignored without
        ``periods``.

    Returns
    -------
    transactions : pandas.DataFrame
        One row per line item, the ``COLUMNS`` in order, every column a string column holding the
        exact text that is written (``""`` for empty fields; nothing is NA). Rows are grouped by
        customer (ascending id) and ordered by date within a customer.
    truth : pandas.DataFrame
        ``customerID, segment``: one row per customer, ``segment`` the archetype's slug. With
        ``periods``: ``customerID, period, segment``, one row per customer and quarter in which the
        customer has a transaction, ``period`` the quarter (``2016Q3``).

    Examples
    --------
    >>> tx, truth = make_transactions(200, 4, random_state=0)
    >>> list(truth.columns), truth.customerID.is_unique
    (['customerID', 'segment'], True)
    >>> set(tx.customerID) == set(truth.customerID)
    True
    """
    n_customers = _check_int("n_customers", n_customers, 1)
    n_segments = _check_int("n_segments", n_segments, 2, MAX_SEGMENTS)
    if periods is None:
        return _generate(n_customers, n_segments, _check_seed(random_state), quirks=bool(quirks))
    periods = _check_int("periods", periods, 1, MAX_PERIODS)
    migration = check_float("migration", migration, minimum=0.0)
    if migration >= 1:
        raise ParameterError(f"migration={migration!r} is not valid; expected a share in [0, 1), e.g. 0.1 "
                             "(a tenth of the customers change segment between quarters)")
    return _generate_periods(n_customers, n_segments, _check_seed(random_state), periods, migration,
                             quirks=bool(quirks))


def _truth_path(out: Path) -> Path:
    """``data/x.csv`` or ``data/x.csv.gz`` -> ``data/x_truth.csv``."""
    name = out.name[:-3] if out.name.endswith(".gz") else out.name
    return out.with_name(f"{Path(name).stem}_truth.csv")


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` atomically as CSV (gzip when the name ends in ``.gz``) with reproducible bytes.

    Quoting is minimal (only fields with a comma or quote), lines end with ``\\n``, and a gzip header
    carries no file name or time, so the same frame always gives the same bytes.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        if path.suffix == ".gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                df.to_csv(gz, mode="wb", encoding="utf-8", index=False, lineterminator="\n")
        else:
            df.to_csv(raw, mode="wb", encoding="utf-8", index=False, lineterminator="\n")
    return path


def write_dataset(
    out: str | os.PathLike, n_customers: int = 3000, n_segments: int = 6, random_state=42, *,
    periods: int | None = None, migration: float = 0.1,
) -> list[Path]:
    """Write a synthetic transaction log and its truth file; what ``seglib make-data`` runs.

    Parameters
    ----------
    out : str or path-like
        CSV file to write (``.csv``; a name ending in ``.gz`` is gzip-compressed). The truth is written
        beside it as ``<stem>_truth.csv`` (``data/raw/transactions.csv`` ->
        ``data/raw/transactions_truth.csv``). Existing files are replaced atomically.
    n_customers, n_segments : int
        See :func:`make_transactions`.
    periods, migration
        Planted migration between quarters, see :func:`make_transactions` (``seglib make-data
        --periods P --migration RATE``); the truth then has one row per customer and quarter.
    random_state : int or None, default 42
        Seed. The same seed writes byte-identical files (on any machine, at any time); different seeds
        give different files. None is not reproducible.

    Returns
    -------
    list of Path
        ``[out, truth]``.
    """
    out = Path(out)
    if out.is_dir():
        raise ParameterError(f"out={str(out)!r} is a folder; expected the path of a CSV file to write")
    df, truth = make_transactions(n_customers, n_segments, random_state, periods=periods, migration=migration)
    paths = [_write_csv(df, out), _write_csv(truth, _truth_path(out))]
    logger.info("wrote %d rows of %d customers (%d segments) to %s", len(df), truth["customerID"].nunique(),
                n_segments, out)
    return paths


_PART = re.compile(r"part-(\d{5})\.csv(\.gz)?")


def write_parts(
    out_dir: str | os.PathLike,
    n_customers: int,
    n_segments: int = 6,
    random_state=42,
    *,
    customers_per_part: int = 50_000,
    compress: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Write a large synthetic log as ``part-00000.csv``, ``part-00001.csv``, ... with bounded memory.

    Each part holds ``customers_per_part`` whole customers, is generated from its own child of
    ``SeedSequence(random_state)`` and written before the next is made, so memory depends on the part
    size only. Customer ids never repeat across parts. The truth of all parts goes to ``truth.csv``.

    Parameters
    ----------
    out_dir : str or path-like
        Folder to write (created if needed). Parts of an earlier, larger run are removed, so a glob
        ``part-*.csv`` reads exactly this data set.
    n_customers, n_segments : int
        See :func:`make_transactions`. About 10 lines per customer: 2.2M customers give ~22M lines.
    random_state : int or None, default 42
        Seed; the same seed and ``customers_per_part`` give the same files.
    customers_per_part : int, default 50_000
        Customers per part (>= 1). 50,000 customers are ~515k lines, ~85 MB of CSV, and need about
        0.6 GB of memory while generated; parts of 50-200 MB suit Dask.
    compress : bool, default False
        Write ``part-NNNNN.csv.gz`` (about 6x smaller, slower to write and read).
    progress : bool, default True
        Show a progress bar over the parts.

    Returns
    -------
    list of Path
        The part files in order, then ``truth.csv``.
    """
    n_customers = _check_int("n_customers", n_customers, 1)
    n_segments = _check_int("n_segments", n_segments, 2, MAX_SEGMENTS)
    per_part = _check_int("customers_per_part", customers_per_part, 1)
    n_parts = math.ceil(n_customers / per_part)
    seeds = _check_seed(random_state, spawnable=True).spawn(n_parts)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".csv.gz" if compress else ".csv"
    for old in out_dir.iterdir():  # stale parts of another run would be read by a glob
        match = _PART.fullmatch(old.name)
        if match and (int(match[1]) >= n_parts or old.name.endswith(".gz") != compress):
            logger.info("removing stale part %s", old)
            old.unlink()
    paths = []
    with atomic_path(out_dir / "truth.csv") as tmp, open(tmp, "w", encoding="utf-8", newline="") as truth_fh:
        for i in tqdm(range(n_parts), desc="parts", unit="part", disable=not progress):
            start = i * per_part
            size = min(per_part, n_customers - start)
            df, truth = _generate(size, n_segments, np.random.default_rng(seeds[i]), id_start=start)
            paths.append(_write_csv(df, out_dir / f"part-{i:05d}{suffix}"))
            truth.to_csv(truth_fh, index=False, header=i == 0, lineterminator="\n")
            logger.debug("wrote part %d: %d rows, %d customers", i, len(df), size)
    logger.info("wrote %d parts of %d customers to %s", n_parts, n_customers, out_dir)
    return paths + [out_dir / "truth.csv"]
