"""Alerts: rules in the App that send chosen events to webhooks, delivered with retries and
recorded in the history store.

`rules` is what the App holds (pure, no I/O); `formats` shapes a request body; `delivery`
decides what an attempt's answer means and makes the attempts; `service` runs it all beside
either runtime, reading the events as a durable subscriber.
"""

from .rules import KINDS, Alert

__all__ = ["KINDS", "Alert"]
