"""Which arm and model a visitor's events belong to (written on views, cart changes and purchases).

No query: the assignment is a hash of the visitor id and the running experiment (cached per process), and
the model version is the one this process serves, when the visitor's arm is ranked by it.
"""

from __future__ import annotations

import uuid

from shop.experiments.selectors import assignment_for

from .serving import serving_model

MODEL_ARMS = (None, "dlrm")  # arms whose lists the model ranks (None: no experiment running)


def attribution_for(*, visitor_id: uuid.UUID) -> tuple[str | None, str | None]:
    """(arm, model version) for an event of this visitor; each None when there is none."""
    arm = assignment_for(visitor_id=visitor_id).arm
    model = serving_model()
    return arm, (model.version if model is not None and arm in MODEL_ARMS else None)
