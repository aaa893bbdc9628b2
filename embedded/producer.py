"""A demo log producer: realistic nginx access lines, JSON application events and
multi-line Java stack traces, written into Kafka topics at a steady rate."""

from __future__ import annotations

import json
import random
import threading
import time

from kafka import KafkaProducer

TOPICS = ("nginx-access", "app-events", "payments")
PATHS = ["/", "/api/orders", "/api/orders/{id}", "/api/cart", "/login", "/static/app.js", "/healthz", "/api/payments"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "kube-probe/1.29", "Go-http-client/2.0"]
SERVICES = ["checkout", "cart", "auth", "inventory"]
HOSTS = ["web-01", "web-02", "web-03"]
LEVELS = ["INFO"] * 12 + ["WARN"] * 3 + ["ERROR"]


def nginx_line(now: float) -> str:
    status = random.choices([200, 200, 200, 201, 304, 404, 500, 502], k=1)[0]
    path = random.choice(PATHS).replace("{id}", str(random.randint(1000, 9999)))
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
    ip = f"10.0.{random.randint(0, 9)}.{random.randint(2, 254)}"
    return (
        f'{ip} - - [{stamp}] "GET {path} HTTP/1.1" {status} {random.randint(120, 48000)} '
        f'"-" "{random.choice(AGENTS)}" rt={random.random() / 2:.3f}'
    )


def app_event(now: float) -> dict[str, object]:
    level = random.choice(LEVELS)
    service = random.choice(SERVICES)
    messages = {
        "INFO": ["order placed", "cart updated", "user signed in", "cache refreshed"],
        "WARN": ["slow query on orders", "retrying upstream call", "token near expiry"],
        "ERROR": ["upstream timed out", "payment declined by provider"],
    }
    return {
        "ts": now,
        "level": level,
        "service": service,
        "host": random.choice(HOSTS),
        "message": f"{level} {service}: {random.choice(messages[level])}",
        "request_id": f"{random.getrandbits(64):016x}",
        "duration_ms": random.randint(1, 900),
    }


def stack_trace() -> str:
    return "\n".join(
        [
            "ERROR c.e.payments.Gateway - charge failed for order " + str(random.randint(1000, 9999)),
            "java.net.SocketTimeoutException: Read timed out",
            "\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)",
            "\tat com.example.payments.ProviderClient.charge(ProviderClient.java:212)",
            "\tat com.example.payments.Gateway.process(Gateway.java:88)",
            "\tat java.base/java.lang.Thread.run(Thread.java:1583)",
        ]
    )


def run(bootstrap: str, stop: threading.Event, rate: float = 20.0) -> None:
    """Produce about `rate` messages per second across the demo topics until `stop`."""
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=5)
    try:
        while not stop.is_set():
            now = time.time()
            producer.send("nginx-access", nginx_line(now).encode())
            if random.random() < 0.6:
                event = app_event(now)
                producer.send("app-events", key=str(event["service"]).encode(), value=json.dumps(event).encode())
            if random.random() < 0.1:
                producer.send("payments", stack_trace().encode())
            elif random.random() < 0.5:
                producer.send("payments", f"INFO payment {random.getrandbits(32):08x} settled".encode())
            stop.wait(1.0 / rate)
    finally:
        producer.close()
