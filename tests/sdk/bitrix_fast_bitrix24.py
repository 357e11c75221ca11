"""Drives confab with fast-bitrix24 (every call goes through `batch`).
usage: B24_WEBHOOK=https://127.0.0.1:PORT/rest/1/sdkhook/ SSL_CERT_FILE=cert.pem python bitrix_fast_bitrix24.py
"""
import os
import sys

from fast_bitrix24 import Bitrix
from fast_bitrix24.server_response import ErrorInServerResponseException

b = Bitrix(os.environ["B24_WEBHOOK"], verbose=False)
CLIENT_ID = "app.sdk.fast"


def expect(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


def call_err(method, params):
    try:
        return {"result": b.call(method, params)}
    except ErrorInServerResponseException as e:
        errors = e.args[0]
        first = next(iter(errors.values())) if isinstance(errors, dict) else errors[0]
        return {"code": first["error"], "message": first["error_description"]}


handler = "https://example.invalid/bot"
bot = b.call("imbot.register", {"CODE": "fastbot", "TYPE": "B", "EVENT_HANDLER": handler, "PROPERTIES": {"NAME": "Fast bot"}, "CLIENT_ID": CLIENT_ID})
expect(isinstance(bot, int) and bot > 0, f"imbot.register -> {bot}")
owner_bot = b.call("imbot.register", {"CODE": "fastowner", "TYPE": "B", "EVENT_HANDLER": handler, "PROPERTIES": {"NAME": "Owner"}, "CLIENT_ID": CLIENT_ID})

chat = b.call("im.chat.add", {"USERS": [2, 3, bot], "TITLE": "Fast chat"})
# fast-bitrix24 flattens list results of call(); lists are read with get_all().
members = b.get_all("im.chat.user.list", {"CHAT_ID": chat})
expect(members == [1, 2, 3, bot], f"members {members}")

expect(b.call("imbot.chat.leave", {"CHAT_ID": chat, "BOT_ID": bot, "CLIENT_ID": CLIENT_ID}) is True, "the bot leaves")
again = call_err("imbot.chat.leave", {"CHAT_ID": chat, "BOT_ID": bot, "CLIENT_ID": CLIENT_ID})
expect(again.get("code") == "WRONG_REQUEST", f"second leave -> {again}")

owned = b.call("imbot.chat.add", {"BOT_ID": owner_bot, "USERS": [2], "TITLE": "Bot owned", "CLIENT_ID": CLIENT_ID})
refused = call_err("imbot.chat.leave", {"CHAT_ID": owned, "BOT_ID": owner_bot, "CLIENT_ID": CLIENT_ID})
expect(refused.get("code") == "ACCESS_ERROR" and refused.get("message") == "LEAVE_OWNER_FORBIDDEN", f"owner bot leave -> {refused}")

r1 = b.call("imopenlines.crm.chat.user.delete", {"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 2, "CHAT_ID": 20})
expect(r1 == 20, f"crm delete with CHAT_ID -> {r1}")
r2 = b.call("imopenlines.crm.chat.user.delete", {"CRM_ENTITY_TYPE": "lead", "CRM_ENTITY": 1205, "USER_ID": 3})
expect(r2 == 21, f"crm delete without CHAT_ID -> {r2}")

res = b.call_batch({"halt": 0, "cmd": {
    "a": "im.chat.add?USERS[0]=2&TITLE=Batch",
    "b": "im.chat.user.list?CHAT_ID=$result[a]",
    "c": "im.chat.leave?CHAT_ID=$result[a]",
}})
expect(res["b"] == [1, 2] and res["c"] is True, f"batch with $result -> {res}")

burst = [b.call("im.chat.user.list", {"CHAT_ID": chat}, raw=True) for _ in range(12)]
expect(len(burst) == 12, "a rate-limited burst is ridden out")
print("scenario ok")
