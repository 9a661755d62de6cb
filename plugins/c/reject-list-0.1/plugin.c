/*
 * The C example as it was on contract 0.1 (wit/0.1), kept unchanged as a
 * test fixture: the languages test loads it beside the 0.2 examples to
 * check that the host still adapts a 0.1 component. New plugins follow
 * ../reject-list (contract 0.2).
 *
 * Rejects the recipients listed in its config and tags every accepted
 * message with an `X-Example-C` header giving the recipient count and the
 * body size.
 *
 *   [[plugin]]
 *   name = "reject-list-c-0.1"
 *   path = "plugins/target/c/reject_list_c_0_1.wasm"
 *   [plugin.config]
 *   reject = ["bob@local.test"]
 *
 * Build: ./build.sh (see there). Ownership follows wit-bindgen's rules:
 * arguments belong to us and are freed here, borrowed resources (the
 * message) are dropped before returning; everything returned must be heap
 * memory, which the generated post-return code frees.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailgate_plugin.h"

#define MAX_REJECT 64
static char *reject[MAX_REJECT];
static size_t n_reject;

static void dup(mailgate_plugin_string_t *out, const char *s) {
    mailgate_plugin_string_dup(out, s);
}

static void next(exports_mailgate_plugin_plugin_response_t *ret) {
    ret->verdict.tag = MAILGATE_PLUGIN_TYPES_VERDICT_CONTINUE;
    ret->actions.ptr = NULL;
    ret->actions.len = 0;
}

void exports_mailgate_plugin_plugin_describe(exports_mailgate_plugin_plugin_manifest_t *ret) {
    dup(&ret->name, "reject-list-c-0.1");
    dup(&ret->version, "0.1.0");
    ret->hooks.len = 2;
    ret->hooks.ptr = malloc(2 * sizeof(mailgate_plugin_types_hook_t));
    ret->hooks.ptr[0] = MAILGATE_PLUGIN_TYPES_HOOK_RCPT_TO;
    ret->hooks.ptr[1] = MAILGATE_PLUGIN_TYPES_HOOK_DATA;
}

/* The config is the plugin's TOML table as JSON, e.g.
 * {"reject":["bob@local.test"]}: read the strings of the "reject" array. */
bool exports_mailgate_plugin_plugin_init(mailgate_plugin_string_t *config,
                                         mailgate_plugin_string_t *err) {
    char *json = strndup((const char *)config->ptr, config->len);
    mailgate_plugin_string_free(config);
    const char *p = strstr(json, "\"reject\"");
    bool ok = true;
    n_reject = 0;
    if (p) {
        p = strchr(p + 8, '[');
        if (!p) {
            ok = false;
        }
        while (ok && p && *p && *p != ']') {
            const char *q = strchr(p, '"');
            const char *end = strchr(p, ']');
            if (!q || (end && end < q)) {
                break;
            }
            const char *close = strchr(q + 1, '"');
            if (!close || n_reject == MAX_REJECT) {
                ok = false;
                break;
            }
            reject[n_reject++] = strndup(q + 1, (size_t)(close - q - 1));
            p = close + 1;
        }
    }
    free(json);
    if (!ok) {
        dup(err, "reject: expected a list of at most 64 addresses");
    }
    return ok;
}

void exports_mailgate_plugin_plugin_on_connect(exports_mailgate_plugin_plugin_context_t *ctx,
                                               exports_mailgate_plugin_plugin_response_t *ret) {
    exports_mailgate_plugin_plugin_context_free(ctx);
    next(ret);
}

void exports_mailgate_plugin_plugin_on_helo(exports_mailgate_plugin_plugin_context_t *ctx,
                                            exports_mailgate_plugin_plugin_response_t *ret) {
    exports_mailgate_plugin_plugin_context_free(ctx);
    next(ret);
}

void exports_mailgate_plugin_plugin_on_mail_from(exports_mailgate_plugin_plugin_context_t *ctx,
                                                 exports_mailgate_plugin_plugin_response_t *ret) {
    exports_mailgate_plugin_plugin_context_free(ctx);
    next(ret);
}

void exports_mailgate_plugin_plugin_on_rcpt_to(exports_mailgate_plugin_plugin_context_t *ctx,
                                               mailgate_plugin_string_t *recipient,
                                               exports_mailgate_plugin_plugin_response_t *ret) {
    exports_mailgate_plugin_plugin_context_free(ctx);
    next(ret);
    for (size_t i = 0; i < n_reject; i++) {
        if (strlen(reject[i]) == recipient->len &&
            strncasecmp(reject[i], (const char *)recipient->ptr, recipient->len) == 0) {
            mailgate_plugin_string_t msg;
            char line[600];
            snprintf(line, sizeof line, "rejecting %.*s", (int)recipient->len,
                     (const char *)recipient->ptr);
            mailgate_plugin_string_set(&msg, line);
            mailgate_plugin_log_write(MAILGATE_PLUGIN_LOG_LEVEL_INFO, &msg);
            ret->verdict.tag = MAILGATE_PLUGIN_TYPES_VERDICT_REJECT;
            ret->verdict.val.reject.code = 550;
            dup(&ret->verdict.val.reject.enhanced, "5.7.1");
            dup(&ret->verdict.val.reject.text, "recipient refused by the C plugin");
            break;
        }
    }
    mailgate_plugin_string_free(recipient);
}

void exports_mailgate_plugin_plugin_on_data(exports_mailgate_plugin_plugin_context_t *ctx,
                                            exports_mailgate_plugin_plugin_borrow_message_t msg,
                                            exports_mailgate_plugin_plugin_response_t *ret) {
    char value[100];
    snprintf(value, sizeof value, "%zu recipients, %llu octets", ctx->recipients.len,
             (unsigned long long)mailgate_plugin_types_method_message_body_size(msg));
    exports_mailgate_plugin_plugin_context_free(ctx);
    /* A borrowed handle must be dropped before returning. */
    mailgate_plugin_types_message_drop_borrow(msg);
    next(ret);
    ret->actions.len = 1;
    ret->actions.ptr = malloc(sizeof(mailgate_plugin_types_action_t));
    ret->actions.ptr[0].tag = MAILGATE_PLUGIN_TYPES_ACTION_ADD_HEADER;
    dup(&ret->actions.ptr[0].val.add_header.f0, "X-Example-C");
    dup(&ret->actions.ptr[0].val.add_header.f1, value);
}

void exports_mailgate_plugin_plugin_on_route(exports_mailgate_plugin_plugin_context_t *ctx,
                                             exports_mailgate_plugin_plugin_route_info_t *rcpt,
                                             exports_mailgate_plugin_plugin_route_decision_t *ret) {
    exports_mailgate_plugin_plugin_context_free(ctx);
    ret->recipient = rcpt->recipient; /* ownership moves to the answer */
    rcpt->recipient.ptr = NULL;
    rcpt->recipient.len = 0;
    exports_mailgate_plugin_plugin_route_info_free(rcpt);
    ret->sender.is_some = false;
    ret->transport = false;
}

void exports_mailgate_plugin_plugin_on_deliver(exports_mailgate_plugin_plugin_context_t *ctx,
                                               exports_mailgate_plugin_plugin_delivery_t *d,
                                               exports_mailgate_plugin_plugin_borrow_message_t msg,
                                               exports_mailgate_plugin_plugin_response_t *ret) {
    mailgate_plugin_types_message_drop_borrow(msg);
    exports_mailgate_plugin_plugin_context_free(ctx);
    exports_mailgate_plugin_plugin_delivery_free(d);
    next(ret);
}

void exports_mailgate_plugin_plugin_on_transport(exports_mailgate_plugin_plugin_context_t *ctx,
                                                 exports_mailgate_plugin_plugin_delivery_t *d,
                                                 exports_mailgate_plugin_plugin_borrow_message_t msg,
                                                 exports_mailgate_plugin_plugin_transport_result_t *ret) {
    mailgate_plugin_types_message_drop_borrow(msg);
    exports_mailgate_plugin_plugin_context_free(ctx);
    exports_mailgate_plugin_plugin_delivery_free(d);
    ret->tag = MAILGATE_PLUGIN_TYPES_TRANSPORT_RESULT_DEFERRED;
    dup(&ret->val.deferred, "no transport");
}
