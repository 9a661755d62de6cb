"""Example mailgate plugin in Python (componentize-py).

Rejects the recipients listed in its config and tags every accepted message
with an `X-Example-Python` header giving the recipient count and body size.

    [[plugin]]
    name = "reject-list-py"
    path = "plugins/target/python/reject_list_py.wasm"
    timeout_ms = 2000
    memory = "64M"
    reuse = true        # init fills REJECT once; instances serve many
                        # transactions (14 µs a transaction instead of 1.5 ms)
    capabilities = []   # CPython seeds its hashes from wasi:random at start;
                        # without the random grant that seed is fixed, which
                        # is all this plugin needs
    [plugin.config]
    reject = ["bob@local.test"]

Build: componentize-py -d wit -w mailgate-plugin componentize app -o out.wasm
(see build.sh).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, types

REJECT: set[str] = set()


def next_() -> types.Response:
    return types.Response(verdict=types.Verdict_Continue(), actions=[])


class Plugin(exports.Plugin):
    def describe(self) -> types.Manifest:
        return types.Manifest(
            name="reject-list-py",
            version="0.1.0",
            hooks=[types.Hook.RCPT_TO, types.Hook.DATA],
        )

    def init(self, config: str) -> None:
        try:
            table = json.loads(config)
        except ValueError as e:
            raise Err(f"bad plugin config: {e}")
        reject = table.get("reject", [])
        if not isinstance(reject, list) or not all(isinstance(r, str) for r in reject):
            raise Err("reject: expected a list of addresses")
        REJECT.clear()
        REJECT.update(r.lower() for r in reject)

    def on_connect(self, ctx: types.Context) -> types.Response:
        return next_()

    def on_helo(self, ctx: types.Context) -> types.Response:
        return next_()

    def on_mail_from(self, ctx: types.Context) -> types.Response:
        return next_()

    def on_rcpt_to(self, ctx: types.Context, recipient: str) -> types.Response:
        if recipient.lower() in REJECT:
            log.write(log.Level.INFO, f"rejecting {recipient}")
            reply = types.SmtpReply(code=550, enhanced="5.7.1", text="recipient refused by the Python plugin")
            return types.Response(verdict=types.Verdict_Reject(reply), actions=[])
        return next_()

    def on_data(self, ctx: types.Context, msg: types.Message) -> types.Response:
        value = f"{len(ctx.recipients)} recipients, {msg.body_size()} octets"
        return types.Response(
            verdict=types.Verdict_Continue(),
            actions=[types.Action_AddHeader(("X-Example-Python", value))],
        )

    def on_route(self, ctx: types.Context, rcpt: types.RouteInfo) -> types.RouteDecision:
        return types.RouteDecision(recipient=rcpt.recipient, sender=None, transport=False)

    def on_deliver(self, ctx: types.Context, d: types.Delivery, msg: types.Message) -> types.Response:
        return next_()

    def on_transport(self, ctx: types.Context, d: types.Delivery, msg: types.Message) -> types.TransportResult:
        return types.TransportResult_Deferred("no transport")
