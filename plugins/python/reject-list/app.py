"""Example mailgate plugin in Python (componentize-py, contract 0.2).

Rejects the recipients listed in its config and tags every accepted message
with an `X-Example-Python` header giving the recipient count and body size.
Its hooks are the interfaces its world (world.wit) exports: one class per
exported interface (`Plugin`, `RcptHook`, `DataHook`); it imports only
`log`.

    [[plugin]]
    name = "reject-list-py"
    path = "plugins/target/python/reject_list_py.wasm"
    timeout_ms = 2000
    memory = "64M"
                        # no `reuse`: describe() declares the plugin
                        # reusable, so init fills REJECT once and an
                        # instance serves many transactions (14 µs a
                        # transaction instead of 1.5 ms)
    capabilities = []   # CPython seeds its hashes from wasi:random at start;
                        # without the random grant that seed is fixed, which
                        # is all this plugin needs
    [plugin.config]
    reject = ["bob@local.test"]

Build: build.sh (componentize-py with the example's world beside wit/0.2).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import plugin
from wit_world.imports import log, types

REJECT: set[str] = set()


class Plugin(exports.Plugin):
    def describe(self) -> plugin.Manifest:
        # Only the parsed list outlives a transaction: one instance may
        # serve many.
        return plugin.Manifest(name="reject-list-py", version="0.2.0", reusable=True)

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


class RcptHook(exports.RcptHook):
    def on_rcpt_to(self, ctx: types.Context, recipient: str) -> types.Response:
        if recipient.lower() in REJECT:
            log.write(log.Level.INFO, f"rejecting {recipient}")
            reply = types.SmtpReply(
                code=550,
                enhanced=types.EnhancedStatus(class_=5, subject=7, detail=1),
                text="recipient refused by the Python plugin",
            )
            return types.Response(verdict=types.Verdict_Reject(reply), actions=[])
        return types.Response(verdict=types.Verdict_Continue(), actions=[])


class DataHook(exports.DataHook):
    def on_data(self, ctx: types.Context, msg: types.Message) -> types.Response:
        value = f"{len(ctx.recipients)} recipients, {msg.body_size()} octets"
        header = types.HeaderField(name="X-Example-Python", value=value)
        return types.Response(
            verdict=types.Verdict_Continue(),
            actions=[types.Action_AddHeader(header)],
        )
