"""Formatting for the transcript and analytics pages: spans of time, counts, shares,
stars, in the admin's language (its units, digit grouping and decimal sign)."""

from datetime import timedelta

from django import template
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, pgettext

NO_VALUE = "\u2013"  # an en dash: nothing to show

register = template.Library()

# Who closed a conversation (its `closed_by`), as the summary says it.
CLOSED_BY = {
    "visitor": gettext_noop("by the visitor"),
    "agent": gettext_noop("by the agent"),
    "system": gettext_noop("by the system"),
    "bot": gettext_noop("by the bot"),
}


@register.filter
def seconds(value) -> str:
    """42s, 3m 05s, 2h 05m (as the language abbreviates them: 3 Min. 05 Sek.); an en
    dash for no value."""
    if value is None or value == "":
        return NO_VALUE
    if isinstance(value, timedelta):
        value = value.total_seconds()
    total = round(float(value))
    if total < 0:
        return NO_VALUE
    if total < 60:
        return pgettext("duration", "%(seconds)ss") % {"seconds": total}
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return pgettext("duration", "%(minutes)sm %(seconds)ss") % {
            "minutes": minutes,
            "seconds": f"{secs:02d}",
        }
    hours, minutes = divmod(minutes, 60)
    return pgettext("duration", "%(hours)sh %(minutes)sm") % {
        "hours": hours,
        "minutes": f"{minutes:02d}",
    }


@register.filter
def thousands(value) -> str:
    """12,345 in English, 12.345 in German, 12 345 in French."""
    if value is None:
        return NO_VALUE
    return number_format(value, force_grouping=True)


@register.filter
def percent(value) -> str:
    if value is None:
        return NO_VALUE
    return pgettext("percent", "%(number)s %%") % {"number": number_format(value * 100, 1)}


@register.filter
def closed_by(value) -> str:
    return _(CLOSED_BY[value]) if value in CLOSED_BY else value


@register.filter
def stars(score) -> str:
    """★★★★☆ for 4."""
    if score is None:
        return ""
    score = int(score)
    return "★" * score + "☆" * (5 - score)
