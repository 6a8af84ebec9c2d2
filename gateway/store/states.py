"""The states of a transaction and of a delivery, and the transitions allowed between them.

One table says which state may follow which (the way h11 and pynetdicom keep their state
machines in one place); the journal refuses any other transition with
:class:`IllegalTransition` before it writes anything.  A transition to the same state is a
note (an outbound delivery queued or sent, an IAR linked, a worker attempt) and is always
allowed.  DESIGN.md section 1 describes the life of a transaction:

    RECEIVED -> STORED -> DECODED -> VALIDATED -> SEARCHED -> ROUTED -> RESPONDED
                     \\-> UNREADABLE         \\-> REJECTED --------------/
    (any unanswered state) -> DUPLICATE        (an identical resubmission, answered again)

RESPONDED and DUPLICATE are terminal: the response is committed exactly once.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """A transaction's state (the ``messages.state`` column holds its value)."""

    RECEIVED = "RECEIVED"
    STORED = "STORED"
    DECODED = "DECODED"
    UNREADABLE = "UNREADABLE"  # bytes that are no transaction at all
    VALIDATED = "VALIDATED"
    REJECTED = "REJECTED"  # the validation verdict (or a limit, a crash): answered by ERRT
    SEARCHED = "SEARCHED"
    ROUTED = "ROUTED"
    RESPONDED = "RESPONDED"
    DUPLICATE = "DUPLICATE"


class Delivery(StrEnum):
    """An outbound delivery's state (``outbound.state``)."""

    QUEUED = "QUEUED"
    SENT = "SENT"
    RETRYING = "RETRYING"
    FAILED = "FAILED"


TERMINAL = frozenset({State.RESPONDED, State.DUPLICATE})
_ANSWER = {State.RESPONDED, State.DUPLICATE}

# from-state -> the states that may follow it (besides itself).  ``None``: a new message.
TRANSITIONS: dict[State | None, frozenset[State]] = {
    None: frozenset({State.RECEIVED}),
    State.RECEIVED: frozenset({State.STORED}),
    State.STORED: frozenset({State.DECODED, State.UNREADABLE, State.REJECTED, *_ANSWER}),
    State.DECODED: frozenset({State.VALIDATED, State.REJECTED, *_ANSWER}),
    State.UNREADABLE: frozenset({State.REJECTED, *_ANSWER}),
    State.VALIDATED: frozenset({State.SEARCHED, State.ROUTED, State.REJECTED, *_ANSWER}),
    # a quality floor or a work limit may still reject after a search
    State.SEARCHED: frozenset({State.ROUTED, State.REJECTED, *_ANSWER}),
    State.ROUTED: frozenset(_ANSWER),
    State.REJECTED: frozenset({State.ROUTED, *_ANSWER}),
    State.RESPONDED: frozenset(),
    State.DUPLICATE: frozenset(),
}

DELIVERY_TRANSITIONS: dict[Delivery | None, frozenset[Delivery]] = {
    None: frozenset({Delivery.QUEUED}),
    Delivery.QUEUED: frozenset({Delivery.SENT, Delivery.RETRYING, Delivery.FAILED}),
    Delivery.RETRYING: frozenset({Delivery.SENT, Delivery.FAILED}),
    Delivery.SENT: frozenset(),
    # an operator's reprocess queues a failed delivery again
    Delivery.FAILED: frozenset({Delivery.QUEUED}),
}


class IllegalTransition(ValueError):
    """A transition the state table does not allow (a bug, never bad input)."""

    def __init__(self, message_id: str, from_state, to_state):
        self.message_id = message_id
        self.from_state = from_state
        self.to_state = to_state
        super().__init__(f"{message_id}: no transition from {from_state} to {to_state}")


def allowed(from_state: str | None, to_state: str) -> bool:
    """Whether ``to_state`` may follow ``from_state`` (same state: always, a note)."""
    if from_state is not None and from_state == to_state:
        return True
    try:
        source = None if from_state is None else State(from_state)
        target = State(to_state)
    except ValueError:
        return False
    return target in TRANSITIONS[source]


def check(message_id: str, from_state: str | None, to_state: str) -> None:
    """Raise :class:`IllegalTransition` unless the table allows the transition."""
    if not allowed(from_state, to_state):
        raise IllegalTransition(message_id, from_state, to_state)


def check_delivery(delivery_id, from_state: str | None, to_state: str) -> None:
    """The same for an outbound delivery (RETRYING -> RETRYING is a further attempt)."""
    if from_state is not None and from_state == to_state:
        return
    try:
        source = None if from_state is None else Delivery(from_state)
        ok = Delivery(to_state) in DELIVERY_TRANSITIONS[source]
    except ValueError:
        ok = False
    if not ok:
        raise IllegalTransition(f"delivery {delivery_id}", from_state, to_state)
