"""The rollout store of this app's fleet store, and what follows each action or report
(notifications of rollout events). Flask glue only: the store and gates hold the rules."""

import time

from flask import current_app

from ..db import get_store
from . import actions
from .store import RolloutStore


class AppRollouts(RolloutStore):
    """The rollout store, with actions that report their events to the centre's webhooks."""

    def act(self, rollout_id, action, actor, version, why=None, skip=(), retry=(), now=None):
        """Take ``action`` (see actions.act); return the audit records it wrote."""
        moment = int(time.time() * 1000) if now is None else now
        written = actions.act(
            self.engine, rollout_id, action, actor, version, moment, why, skip, retry
        )
        announce(written)
        return written


def rollout_store() -> AppRollouts:
    return AppRollouts(get_store())


def announce(records) -> None:
    """Send rollout events to the centre's webhooks (rollouts/notify.py), if any are set."""
    from .notify import send_events

    send_events(current_app, records)
