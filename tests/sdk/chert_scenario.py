#!/usr/bin/env python3
"""A Chert client written from the docs' own example (seed 003), standard
library only: signs every request with HMAC v1 over "<ts>.<raw body>" and
drives a group through create, message, add, remove, leave and leave again.

usage: chert_scenario.py BASE_URL TENANT SIGNING_SECRET LINE_NUMBER
"""
import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE, TENANT, SECRET, LINE = sys.argv[1:5]


def call(method, path, payload=None):
    body = "" if payload is None else json.dumps(payload)
    ts = int(time.time())
    sig = hmac.new(SECRET.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    headers = {"x-chert-tenant": TENANT, "x-chert-signature": f"v1,{ts},{sig}"}
    if payload is not None:
        headers["content-type"] = "application/json"
    req = urllib.request.Request(BASE + path, data=body.encode() if body else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as res:
            return res.status, json.loads(res.read() or b"null"), res.headers.get("x-trace-id")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers.get("x-trace-id")


def expect(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


status, body, _ = call("GET", "/api/v1/phone-numbers")
expect(status == 200 and any(p["phone_number"] == LINE for p in body["phone_numbers"]), "the line is listed")

status, body, trace = call("POST", "/api/v1/chats", {
    "from": LINE,
    "to": ["+14155557001", "+14155557002", "+14155557003"],
    "message": {"parts": [{"type": "text", "value": "Hello group"}], "subject": "Python group"},
})
expect(status == 200 and body["chat"]["is_group"] and trace, "group created")
chat = body["chat"]["id"]

status, body, _ = call("POST", f"/api/v1/chats/{chat}/messages", {"message": {"parts": [{"type": "text", "value": "second"}]}})
expect(status == 200 and body["message"]["chat_id"] == chat, "message sent")

status, body, _ = call("POST", f"/api/v1/chats/{chat}/participants", {"address": "+14155557004"})
expect(status == 200 and len(body["participants"]) == 5, "participant added")

addr = urllib.parse.quote("+14155557004", safe="")
status, body, _ = call("DELETE", f"/api/v1/chats/{chat}/participants/{addr}")
expect(status == 200 and body["removed"] == "+14155557004", "participant removed (URL-encoded address)")

status, body, _ = call("POST", f"/api/v1/chats/{chat}/leave")
expect(status == 200 and body == {"chat_id": chat, "status": "left"}, "left the group")

time.sleep(1.1)  # a new second, a new signature: this is not a replay
status, body, _ = call("POST", f"/api/v1/chats/{chat}/leave")
expect(status == 400 and body["error"]["code"] == 1006 and body["error"]["retryable"] is False, "second leave is 1006")
print("scenario ok")
