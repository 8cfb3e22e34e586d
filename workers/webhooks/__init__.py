"""Webhooks: the event outbox (`events`), signing (`signing`), and delivery (`deliverer`).

Events are rows written by `events.emit_*` inside the transaction of the state change that
causes them. Every worker runs a `DeliveryLoop` on a thread of its own (a bootstep); each pass
claims due deliveries with a conditional UPDATE (so two workers never send the same one at
once) and POSTs them, signed.
"""
