// Example mailgate plugin in JavaScript (componentize-js).
//
// Rejects the recipients listed in its config and tags every accepted
// message with an `X-Example-JS` header giving the recipient count and the
// body size.
//
//   [[plugin]]
//   name = "reject-list-js"
//   path = "plugins/target/js/reject_list_js.wasm"
//   timeout_ms = 2000
//   memory = "64M"
//   reuse = true       # init fills the list once; instances serve many
//                      # transactions (47 µs a transaction instead of 0.6 ms)
//   capabilities = []  # the JS runtime may read wasi:random and the clocks;
//                      # without the grants they answer a fixed seed and the
//                      # epoch, which this plugin does not mind
//   [plugin.config]
//   reject = ["bob@local.test"]
//
// Build: npm install && node build.mjs

import { write } from 'mailgate:plugin/log@0.1.0';

let reject = new Set();

const next = () => ({ verdict: { tag: 'continue' }, actions: [] });

export const plugin = {
  describe() {
    return { name: 'reject-list-js', version: '0.1.0', hooks: ['rcpt-to', 'data'] };
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

  onConnect: next,
  onHelo: next,
  onMailFrom: next,

  onRcptTo(ctx, recipient) {
    if (reject.has(recipient.toLowerCase())) {
      write('info', `rejecting ${recipient}`);
      return {
        verdict: {
          tag: 'reject',
          val: { code: 550, enhanced: '5.7.1', text: 'recipient refused by the JavaScript plugin' },
        },
        actions: [],
      };
    }
    return next();
  },

  onData(ctx, msg) {
    const value = `${ctx.recipients.length} recipients, ${msg.bodySize()} octets`;
    return { verdict: { tag: 'continue' }, actions: [{ tag: 'add-header', val: ['X-Example-JS', value] }] };
  },

  onRoute(ctx, rcpt) {
    return { recipient: rcpt.recipient, sender: undefined, transport: false };
  },

  onDeliver: next,

  onTransport() {
    return { tag: 'deferred', val: 'no transport' };
  },
};
