"""Baseline (a): the stack a Python developer would typically write.

Flask under gunicorn (2 sync workers), ``stripe.Webhook.construct_event`` and RQ's
``Queue.enqueue``. Configured by BENCH_REDIS_URL and BENCH_STRIPE_SECRET.
"""

import os

import stripe
from flask import Flask, request
from redis import Redis
from rq import Queue

app = Flask(__name__)
queue = Queue("bench", connection=Redis.from_url(os.environ["BENCH_REDIS_URL"]))
SECRET = os.environ["BENCH_STRIPE_SECRET"]


@app.post("/webhooks/stripe")
def stripe_webhook() -> tuple[str, int]:
    try:
        event = stripe.Webhook.construct_event(
            request.get_data(), request.headers.get("Stripe-Signature"), SECRET
        )
    except (ValueError, stripe.SignatureVerificationError):
        return "bad signature", 400
    queue.enqueue("workers.jobs.apply_payment_event", f"stripe:{event['id']}")
    return "", 200
