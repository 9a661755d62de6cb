/*
 * Example mailgate plugin in C (contract 0.2; wit-bindgen C bindings,
 * clang, wasi-libc).
 *
 * Rejects the recipients listed in its config and tags every accepted
 * message with an `X-Example-C` header giving the recipient count and the
 * body size. Its hooks are the interfaces its world (world.wit) exports:
 * rcpt-hook and data-hook; it imports only `log`.
 *
 *   [[plugin]]
 *   name = "reject-list-c"
 *   path = "plugins/target/c/reject_list_c.wasm"
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

#include "reject_list.h"

#define MAX_REJECT 64
static char *reject[MAX_REJECT];
static size_t n_reject;

static void dup(reject_list_string_t *out, const char *s) {
    reject_list_string_dup(out, s);
}

static void next(mailgate_plugin_types_response_t *ret) {
    ret->verdict.tag = MAILGATE_PLUGIN_TYPES_VERDICT_CONTINUE;
    ret->actions.ptr = NULL;
    ret->actions.len = 0;
}

void exports_mailgate_plugin_plugin_describe(exports_mailgate_plugin_plugin_manifest_t *ret) {
    dup(&ret->name, "reject-list-c");
    dup(&ret->version, "0.2.0");
    /* Only the parsed list outlives a transaction: one instance may serve
     * many. */
    ret->reusable = true;
}

/* The config is the plugin's TOML table as JSON, e.g.
 * {"reject":["bob@local.test"]}: read the strings of the "reject" array. */
bool exports_mailgate_plugin_plugin_init(reject_list_string_t *config, reject_list_string_t *err) {
    char *json = strndup((const char *)config->ptr, config->len);
    reject_list_string_free(config);
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

void exports_mailgate_plugin_rcpt_hook_on_rcpt_to(exports_mailgate_plugin_rcpt_hook_context_t *ctx,
                                                 reject_list_string_t *recipient,
                                                 exports_mailgate_plugin_rcpt_hook_response_t *ret) {
    exports_mailgate_plugin_rcpt_hook_context_free(ctx);
    next(ret);
    for (size_t i = 0; i < n_reject; i++) {
        if (strlen(reject[i]) == recipient->len &&
            strncasecmp(reject[i], (const char *)recipient->ptr, recipient->len) == 0) {
            reject_list_string_t msg;
            char line[600];
            snprintf(line, sizeof line, "rejecting %.*s", (int)recipient->len,
                     (const char *)recipient->ptr);
            reject_list_string_set(&msg, line);
            mailgate_plugin_log_write(MAILGATE_PLUGIN_LOG_LEVEL_INFO, &msg);
            ret->verdict.tag = MAILGATE_PLUGIN_TYPES_VERDICT_REJECT;
            ret->verdict.val.reject.code = 550;
            /* Enhanced status codes are records: 5.7.1. */
            ret->verdict.val.reject.enhanced.is_some = true;
            ret->verdict.val.reject.enhanced.val.class_ = 5;
            ret->verdict.val.reject.enhanced.val.subject = 7;
            ret->verdict.val.reject.enhanced.val.detail = 1;
            dup(&ret->verdict.val.reject.text, "recipient refused by the C plugin");
            break;
        }
    }
    reject_list_string_free(recipient);
}

void exports_mailgate_plugin_data_hook_on_data(exports_mailgate_plugin_data_hook_context_t *ctx,
                                               exports_mailgate_plugin_data_hook_borrow_message_t msg,
                                               exports_mailgate_plugin_data_hook_response_t *ret) {
    char value[100];
    snprintf(value, sizeof value, "%zu recipients, %llu octets", ctx->recipients.len,
             (unsigned long long)mailgate_plugin_types_method_message_body_size(msg));
    exports_mailgate_plugin_data_hook_context_free(ctx);
    /* A borrowed handle must be dropped before returning. */
    mailgate_plugin_types_message_drop_borrow(msg);
    next(ret);
    ret->actions.len = 1;
    ret->actions.ptr = malloc(sizeof(mailgate_plugin_types_action_t));
    ret->actions.ptr[0].tag = MAILGATE_PLUGIN_TYPES_ACTION_ADD_HEADER;
    dup(&ret->actions.ptr[0].val.add_header.name, "X-Example-C");
    dup(&ret->actions.ptr[0].val.add_header.value, value);
}
