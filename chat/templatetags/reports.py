"""Formatting for the transcript and analytics pages: spans of time, shares, stars."""

from datetime import timedelta

from django import template

NO_VALUE = "\u2013"  # an en dash: nothing to show

register = template.Library()


@register.filter
def seconds(value) -> str:
    """42s, 3m 05s, 2h 05m; an en dash for no value."""
    if value is None or value == "":
        return NO_VALUE
    if isinstance(value, timedelta):
        value = value.total_seconds()
    total = round(float(value))
    if total < 0:
        return NO_VALUE
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@register.filter
def thousands(value) -> str:
    """12,345 (the admin runs in English; no humanize app needed for one filter)."""
    if value is None:
        return NO_VALUE
    return f"{value:,}"


@register.filter
def percent(value) -> str:
    if value is None:
        return NO_VALUE
    return f"{value * 100:.1f} %"


@register.filter
def stars(score) -> str:
    """★★★★☆ for 4."""
    if score is None:
        return ""
    score = int(score)
    return "★" * score + "☆" * (5 - score)
