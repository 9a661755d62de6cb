// Example mailgate plugin in JavaScript (componentize-js, contract 0.2).
//
// Rejects the recipients listed in its config and tags every accepted
// message with an `X-Example-JS` header giving the recipient count and the
// body size. Its hooks are the interfaces its world (world.wit) exports:
// one exported object per interface (`plugin`, `rcptHook`, `dataHook`); it
// imports only `log`.
//
//   [[plugin]]
//   name = "reject-list-js"
//   path = "plugins/target/js/reject_list_js.wasm"
//   timeout_ms = 2000
//   memory = "64M"
//                      # no `reuse`: describe() declares the plugin
//                      # reusable, so init fills the list once and an
//                      # instance serves many transactions (47 µs a
//                      # transaction instead of 0.6 ms)
//   capabilities = []  # the JS runtime may read wasi:random and the clocks;
//                      # without the grants they answer a fixed seed and the
//                      # epoch, which this plugin does not mind
//   [plugin.config]
//   reject = ["bob@local.test"]
//
// Build: npm install && node build.mjs (the example's world beside wit/0.2)

import { write } from 'mailgate:plugin/log@0.2.0';

let reject = new Set();

export const plugin = {
  describe() {
    // Only the parsed list outlives a transaction: one instance may serve
    // many.
    return { name: 'reject-list-js', version: '0.2.0', reusable: true };
  },

  init(config) {
    let table;
    try {
      table = JSON.parse(config);
    } catch (e) {
      throw `bad plugin config: ${e}`;
    }
    const list = table.reject ?? [];
    if (!Array.isArray(list) || !list.every((r) => typeof r === 'string')) {
      throw 'reject: expected a list of addresses';
    }
    reject = new Set(list.map((r) => r.toLowerCase()));
  },
};

export const rcptHook = {
  onRcptTo(ctx, recipient) {
    if (reject.has(recipient.toLowerCase())) {
      write('info', `rejecting ${recipient}`);
      const reply = {
        code: 550,
        enhanced: { class: 5, subject: 7, detail: 1 },
        text: 'recipient refused by the JavaScript plugin',
      };
      return { verdict: { tag: 'reject', val: reply }, actions: [] };
    }
    return { verdict: { tag: 'continue' }, actions: [] };
  },
};

export const dataHook = {
  onData(ctx, msg) {
    const value = `${ctx.recipients.length} recipients, ${msg.bodySize()} octets`;
    return {
      verdict: { tag: 'continue' },
      actions: [{ tag: 'add-header', val: { name: 'X-Example-JS', value } }],
    };
  },
};
