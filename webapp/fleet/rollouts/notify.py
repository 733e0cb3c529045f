"""Rollout events to webhooks: placeholder until the delivery code is shared (see report)."""


def send_events(app, records) -> None:
    """Send ``records`` (audit records) as webhook events; nothing is configured yet."""
    return None
