"""Webhooks: the event outbox (`events`), signing (`signing`), and delivery (`deliverer`).

Events are rows written by `events.emit_*` inside the transaction of the state change that
causes them. Every worker's dispatcher runs a `DeliveryPump` pass from its maintenance step;
the pass claims due deliveries with a conditional UPDATE (so two dispatchers never send the same
one at once) and POSTs them, signed, from a background thread.
"""
