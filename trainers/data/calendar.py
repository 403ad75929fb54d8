"""How many bars make a year: the bar size and the market's calendar.

A Sharpe ratio is annualised by sqrt(bars per year), and that number depends on the
market as much as on the bar: an hour of FX (24x5) is not an hour of an equity (6.5 h
on about 252 days) nor of crypto (24x7). Daily bars were once annualised as 252 for
every source, so hourly data came out off by a factor of about 5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from trainers.data.ohlcv import BarSize, bar_sizes_of, one_bar_size

Calendar = Literal["equities", "fx", "crypto"]
CALENDARS: tuple[Calendar, ...] = ("equities", "fx", "crypto")

_DAY = 86400
_TRADING_DAYS = {"equities": 252.0, "fx": 260.0, "crypto": 365.25}
_HOURS_PER_DAY = {"equities": 6.5, "fx": 24.0, "crypto": 24.0}


def infer_calendar(times: pd.Series, bar: BarSize) -> Calendar:
    """crypto when more than 5% of the bars fall on a weekend, fx when intraday bars
    cover most hours of the day, else equities."""
    stamps = pd.DatetimeIndex(times)
    if len(stamps) == 0:
        return "equities"
    if bar.seconds <= _DAY and float((stamps.day_of_week >= 5).mean()) > 0.05:
        return "crypto"
    if bar.seconds < _DAY and len(set(stamps.hour.tolist())) >= 20:
        return "fx"
    return "equities"


def periods_per_year(bar: BarSize, calendar: Calendar) -> float:
    """Bars in a year of ``calendar`` (a week is 52 a year, a month 12, everywhere)."""
    if bar.label == "1mo":
        return 12.0
    if bar.seconds >= 7 * _DAY:
        return 52.0 * 7 * _DAY / bar.seconds
    days = _TRADING_DAYS[calendar]
    if bar.seconds >= _DAY:
        return days * _DAY / bar.seconds
    return days * _HOURS_PER_DAY[calendar] * 3600.0 / bar.seconds


@dataclass(frozen=True)
class Annualisation:
    """Bars per year for a run, and where the figure came from."""

    periods_per_year: float
    bar: BarSize | None
    calendar: Calendar | None
    origin: Literal["given", "table", "inferred"]

    def describe(self) -> str:
        bar = self.bar.label if self.bar else "?"
        return f"{self.periods_per_year:g} bars a year ({bar} bars, {self.calendar}, {self.origin})"


def annualisation(
    frame: pd.DataFrame,
    time: str,
    symbol: str | None,
    recorded: Mapping[str, object] | None = None,
    given: float | None = None,
) -> Annualisation:
    """``given`` (``--periods-per-year``) wins; else what the import recorded with the
    table; else inferred from the bars. Mixed bar sizes are refused, naming the symbols."""
    bar = one_bar_size(bar_sizes_of(frame, time, symbol))
    recorded = recorded or {}
    market = recorded.get("calendar")
    known = [c for c in CALENDARS if c == market]
    calendar: Calendar = known[0] if known else infer_calendar(frame[time], bar)
    if given is not None:
        return Annualisation(float(given), bar, calendar, "given")
    if recorded.get("bar_size") == bar.label and isinstance(
        recorded.get("periods_per_year"), int | float
    ):
        return Annualisation(float(recorded["periods_per_year"]), bar, calendar, "table")  # type: ignore[arg-type]
    return Annualisation(periods_per_year(bar, calendar), bar, calendar, "inferred")
