/* IoT Hub wire conventions: escaping, property bags, Username, topics. */
#include <stdio.h>
#include <string.h>

#include "hil_iothub.h"

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

static const char hexd[] = "0123456789ABCDEF";

/* Output writer with a length bound. */
typedef struct {
    char *p;
    size_t cap, n;
    bool over;
} wbuf;

static void wb_putc(wbuf *w, char c)
{
    if (w->n + 1 < w->cap) w->p[w->n] = c;
    else w->over = true;
    w->n++;
}

static void wb_puts(wbuf *w, const char *s)
{
    while (*s) wb_putc(w, *s++);
}

static void wb_escape(wbuf *w, const char *s, bool plus_for_space)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (unreserved(c)) wb_putc(w, (char)c);
        else if (c == ' ' && plus_for_space) wb_putc(w, '+');
        else {
            wb_putc(w, '%');
            wb_putc(w, hexd[c >> 4]);
            wb_putc(w, hexd[c & 15]);
        }
    }
}

static int wb_end(wbuf *w)
{
    if (w->cap == 0) return -1;
    if (w->over) {
        w->p[0] = 0;
        return -1;
    }
    w->p[w->n] = 0;
    return (int)w->n;
}

int hil_query_escape(const char *s, char *out, size_t cap)
{
    wbuf w = {out, cap, 0, false};
    wb_escape(&w, s, true);
    return wb_end(&w);
}

int hil_bag_escape(const char *s, char *out, size_t cap)
{
    wbuf w = {out, cap, 0, false};
    wb_escape(&w, s, false);
    return wb_end(&w);
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int hil_query_unescape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int h = hexv(s[i + 1]), l = hexv(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = (char)(h << 4 | l);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (o + 1 >= cap) return -1;
        out[o++] = c;
    }
    if (cap == 0) return -1;
    out[o] = 0;
    return (int)o;
}

int hil_bag_encode(const hil_prop *p, size_t n, char *out, size_t cap)
{
    wbuf w = {out, cap, 0, false};
    for (size_t i = 0; i < n; i++) {
        if (i) wb_putc(&w, '&');
        wb_escape(&w, p[i].name, false);
        if (!p[i].novalue) {
            wb_putc(&w, '=');
            wb_escape(&w, p[i].value ? p[i].value : "", false);
        }
    }
    return wb_end(&w);
}

int hil_bag_parse(const char *text, size_t len, char *store, size_t store_cap, hil_prop *props, size_t max)
{
    if (len == 0) return 0;
    size_t used = 0, n = 0, i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && text[j] != '&') j++;
        if (j == i) return -1; /* empty entry */
        if (n >= max) return -1;
        size_t eq = i;
        while (eq < j && text[eq] != '=') eq++;
        if (eq == i) return -1; /* empty name */
        int k = hil_query_unescape(text + i, eq - i, store + used, store_cap - used);
        if (k < 0) return -1;
        props[n].name = store + used;
        used += (size_t)k + 1;
        props[n].novalue = eq == j;
        if (eq == j) {
            if (used + 1 > store_cap) return -1;
            store[used] = 0;
            props[n].value = store + used;
            used++;
        } else {
            k = hil_query_unescape(text + eq + 1, j - eq - 1, store + used, store_cap - used);
            if (k < 0) return -1;
            props[n].value = store + used;
            used += (size_t)k + 1;
        }
        n++;
        i = j + 1;
        if (j == len) break;
    }
    return (int)n;
}

int hil_username(const char *host, const char *device_id, const char *module_id, const char *api_version,
                 const char *client_type, const char *model_id, char *out, size_t cap)
{
    wbuf w = {out, cap, 0, false};
    wb_puts(&w, host);
    wb_putc(&w, '/');
    wb_puts(&w, device_id);
    if (module_id && *module_id) {
        wb_putc(&w, '/');
        wb_puts(&w, module_id);
    }
    wb_putc(&w, '/');
    char sep = '?';
    /* Parameters as url.Values.Encode orders them: api-version first, then
     * the extra keys sorted (DeviceClientType < model-id). */
    if (api_version && *api_version) {
        wb_puts(&w, "?api-version=");
        wb_escape(&w, api_version, true);
        sep = '&';
    }
    if (client_type && *client_type) {
        wb_putc(&w, sep);
        wb_puts(&w, "DeviceClientType=");
        wb_escape(&w, client_type, true);
        sep = '&';
    }
    if (model_id && *model_id) {
        wb_putc(&w, sep);
        wb_puts(&w, "model-id=");
        wb_escape(&w, model_id, true);
    }
    return wb_end(&w);
}

int hil_topic_telemetry(const char *device_id, const char *module_id, const hil_prop *bag, size_t n, char *out, size_t cap)
{
    int k;
    if (module_id && *module_id) k = snprintf(out, cap, "devices/%s/modules/%s/messages/events/", device_id, module_id);
    else k = snprintf(out, cap, "devices/%s/messages/events/", device_id);
    if (k < 0 || (size_t)k >= cap) return -1;
    int b = hil_bag_encode(bag, n, out + k, cap - (size_t)k);
    if (b < 0) return -1;
    return k + b;
}

static int fmt_ok(int k, size_t cap)
{
    return k < 0 || (size_t)k >= cap ? -1 : k;
}

int hil_topic_c2d_filter(const char *device_id, char *out, size_t cap)
{
    return fmt_ok(snprintf(out, cap, "devices/%s/messages/devicebound/#", device_id), cap);
}

int hil_topic_twin_get(const char *rid, char *out, size_t cap)
{
    return fmt_ok(snprintf(out, cap, "$iothub/twin/GET/?$rid=%s", rid), cap);
}

int hil_topic_twin_reported(const char *rid, char *out, size_t cap)
{
    return fmt_ok(snprintf(out, cap, "$iothub/twin/PATCH/properties/reported/?$rid=%s", rid), cap);
}

int hil_topic_method_response(int status, const char *rid, char *out, size_t cap)
{
    return fmt_ok(snprintf(out, cap, "$iothub/methods/res/%d/?$rid=%s", status, rid), cap);
}

const char *hil_topic_kind_name(hil_topic_kind k)
{
    static const char *const names[] = {"unknown", "telemetry", "c2d", "twin-get", "twin-reported", "twin-response", "twin-desired", "method-request", "method-response"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

static bool prefix(const char **s, const char *p)
{
    size_t n = strlen(p);
    if (strncmp(*s, p, n) != 0) return false;
    *s += n;
    return true;
}

/* "{digits}/" -> status; returns the rest or NULL. */
static const char *parse_status(const char *s, int *status)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || slash - s > 9) return NULL;
    int v = 0;
    for (const char *p = s; p < slash; p++) {
        if (*p < '0' || *p > '9') return NULL;
        v = v * 10 + (*p - '0');
    }
    *status = v;
    return slash + 1;
}

static int parse_params(const char *s, hil_topic *t)
{
    if (*s == 0) return 0;
    if (*s != '?') return -1;
    s++;
    if (*s == 0) return 0;
    for (;;) {
        const char *amp = strchr(s, '&');
        size_t n = amp ? (size_t)(amp - s) : strlen(s);
        if (n == 0) return -1;
        const char *eq = memchr(s, '=', n);
        size_t kl = eq ? (size_t)(eq - s) : n;
        const char *v = eq ? eq + 1 : s + n;
        size_t vl = (size_t)(s + n - v);
        if (kl == 4 && strncmp(s, "$rid", 4) == 0) {
            if (t->has_rid) return -1;
            t->rid = v;
            t->rid_len = vl;
            t->has_rid = true;
        } else if (kl == 8 && strncmp(s, "$version", 8) == 0) {
            if (t->has_version) return -1;
            if (vl == 0 || vl > 18) return -1;
            int64_t x = 0;
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9') return -1;
                x = x * 10 + (v[i] - '0');
            }
            t->version = x;
            t->has_version = true;
        }
        if (!amp) return 0;
        s = amp + 1;
    }
}

int hil_topic_parse(const char *topic, hil_topic *t)
{
    memset(t, 0, sizeof(*t));
    const char *s = topic;
    if (prefix(&s, "devices/")) {
        const char *slash = strchr(s, '/');
        if (!slash || slash == s) return -1;
        s = slash + 1;
        if (prefix(&s, "messages/events/")) t->kind = HIL_TOPIC_TELEMETRY;
        else if (prefix(&s, "messages/devicebound/")) t->kind = HIL_TOPIC_C2D;
        else if (prefix(&s, "modules/")) {
            const char *m = strchr(s, '/');
            if (!m) return -1;
            s = m + 1;
            if (!prefix(&s, "messages/events/")) return -1;
            t->kind = HIL_TOPIC_TELEMETRY;
        } else return -1;
        t->bag = s;
        t->bag_len = strlen(s);
        hil_prop props[32];
        char store[1024];
        if (t->bag_len && (t->bag_len >= sizeof(store) || hil_bag_parse(t->bag, t->bag_len, store, sizeof(store), props, 32) < 0)) return -1;
        return 0;
    }
    if (prefix(&s, "$iothub/twin/")) {
        if (prefix(&s, "GET/")) t->kind = HIL_TOPIC_TWIN_GET;
        else if (prefix(&s, "PATCH/properties/reported/")) t->kind = HIL_TOPIC_TWIN_REPORTED;
        else if (prefix(&s, "PATCH/properties/desired/")) t->kind = HIL_TOPIC_TWIN_DESIRED;
        else if (prefix(&s, "res/")) {
            t->kind = HIL_TOPIC_TWIN_RESPONSE;
            if (!(s = parse_status(s, &t->status))) return -1;
        } else return -1;
        return parse_params(s, t);
    }
    if (prefix(&s, "$iothub/methods/")) {
        if (prefix(&s, "POST/")) {
            t->kind = HIL_TOPIC_METHOD_REQUEST;
            const char *slash = strchr(s, '/');
            if (!slash || slash == s) return -1;
            t->method = s;
            t->method_len = (size_t)(slash - s);
            return parse_params(slash + 1, t);
        }
        if (prefix(&s, "res/")) {
            t->kind = HIL_TOPIC_METHOD_RESPONSE;
            if (!(s = parse_status(s, &t->status))) return -1;
            return parse_params(s, t);
        }
        return -1;
    }
    return -1;
}
