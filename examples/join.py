"""A stream join: match each order with its payment, whichever arrives first.

Run it with ``fastflow run examples/join.py``. Orders and payments come from
two inputs; both are keyed by order id, and :func:`fastflow.operators.join`
emits ``(order_id, (order, payment))`` as soon as an order has both. An order
still unpaid when the input ends is never emitted.
"""

from typing import Any, Dict, Tuple

import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

ORDERS = [
    {"order": "o1", "customer": "ada", "item": "kettle"},
    {"order": "o2", "customer": "ben", "item": "teapot"},
    {"order": "o3", "customer": "cy", "item": "mugs"},
    {"order": "o4", "customer": "ada", "item": "tea"},
]
PAYMENTS = [
    {"order": "o2", "amount": 30},
    {"order": "o1", "amount": 45},
    {"order": "o4", "amount": 8},
]


def show(joined: Tuple[str, Tuple[Dict[str, Any], Dict[str, Any]]]) -> str:
    order_id, (order, payment) = joined
    return f"{order_id}: {order['customer']} paid {payment['amount']} for {order['item']}"


flow = Dataflow("join")
orders = op.input("orders", flow, TestingSource(ORDERS))
payments = op.input("payments", flow, TestingSource(PAYMENTS))
orders = op.key_on("key_orders", orders, lambda order: order["order"])
payments = op.key_on("key_payments", payments, lambda payment: payment["order"])
paid = op.join("match", orders, payments)
op.output("print", op.map("show", paid, show), StdOutSink())
