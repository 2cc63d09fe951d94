/* hil_client: the IoT Hub device client and the agent's operations, in
 * portable C11 over hil_port.h. One state machine, driven under the core
 * lock by UART input, MQTT callbacks and a periodic tick.
 *
 * Behaviour follows devicefw/sim (the Go reference firmware) where the
 * requirement catalog leaves a choice, so the two firmwares can be compared
 * spec by spec. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hil_agent.h"
#include "hil_iothub.h"
#include "hil_port.h"
#include "mbedtls/base64.h"
#include "mbedtls/sha256.h"
#include "mbedtls/version.h"

#define FW_NAME "hilrun-c"
#define FW_VERSION "0.1.0"
#ifndef HIL_BUILD
#define HIL_BUILD "dev"
#endif

#define MAX_TWIN_PENDING 8
#define MAX_TEL_PENDING 32
#define MAX_METHOD_PENDING 4
#define SEEN_C2D 64
#define MAX_TELEMETRY_BYTES (256 * 1024)
#define THROTTLED_MIN_BACKOFF_MS 10000
#define TELEMETRY_ACK_TIMEOUT_MS (4 * 60 * 1000)
#define MAX_EVENT_DOC 1500

typedef enum { ST_IDLE, ST_CONNECTING, ST_CONNECTED, ST_BACKOFF, ST_STOPPED } conn_state;
static const char *const state_names[] = {"idle", "connecting", "connected", "backoff", "stopped"};

typedef enum { TW_GET, TW_RESYNC, TW_REPORT } twin_kind;

typedef struct {
    bool used;
    char rid[12];
    twin_kind kind;
    uint32_t req; /* agent request id (0 for the resync) */
    uint64_t deadline;
    uint64_t resend_at; /* waiting to be sent again (TWIN-005); 0 = awaiting the answer */
    int tries;
    char *body; /* reported patch, kept for a resend */
} twin_pending;

typedef struct {
    bool used;
    int msg_id;
    uint64_t ref;
    int size;
    uint32_t req; /* agent request waiting for the PUBACK, or 0 */
    uint64_t deadline;
} tel_pending;

typedef struct {
    bool used;
    uint64_t due;
    int status;
    char rid[64];
    char name[64];
    int size;
    char *payload;
} method_pending;

static struct {
    hil_agent agent;
    cJSON *cfg; /* merged configuration (NVS "config") */
    conn_state state;
    char reason[160];
    bool session;       /* between client.open and client.close */
    bool mqtt_up;       /* a port session exists (connecting or connected) */
    int attempt;
    int connects;
    int swap_connects; /* connects at the last certificate swap, -1 none */
    uint64_t up_at; /* when the current connection was established */
    int quick;      /* losses in a row of connections that did not live long */
    bool sntp_pending;
    int sntp_attempt;
    uint64_t sntp_hold_until;
    char sntp_hold_server[128];
    uint64_t next_attempt;
    int64_t token_se;
    int64_t renew_at_ms; /* RTC time of the next SAS renewal, 0 none */
    const char *pending_creds; /* creds.renewed kind to report after the next CONNACK */
    bool reset_pending;

    cJSON *desired;
    int64_t desired_ver, reported_ver;
    uint32_t rid_seq;
    twin_pending twin[MAX_TWIN_PENDING];
    tel_pending tel[MAX_TEL_PENDING];
    uint64_t tel_ref;
    method_pending meth[MAX_METHOD_PENDING];
    char seen[SEEN_C2D][40];
    int seen_next;
} C;

/* ---------------------------------------------------------------- config */
static cJSON *section(const char *name) { return cJSON_GetObjectItemCaseSensitive(C.cfg, name); }
static const char *cfg_str(const char *sec, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(section(sec), key));
    return s ? s : "";
}
static double cfg_num(const char *sec, const char *key, double def)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(section(sec), key);
    return cJSON_IsNumber(n) && n->valuedouble > 0 ? n->valuedouble : def;
}

static void save_config(void)
{
    char *s = cJSON_PrintUnformatted(C.cfg);
    if (s) {
        hil_port_nvs_set("config", s, strlen(s));
        hil_mem_free(s);
    }
}

/* NVS blob as a fresh heap string, NULL when absent. */
static char *nvs_string(const char *key)
{
    int n = hil_port_nvs_get(key, NULL, 0);
    if (n < 0) return NULL;
    char *b = hil_mem_alloc((size_t)n + 1);
    if (!b) return NULL;
    if (hil_port_nvs_get(key, b, (size_t)n + 1) != n) {
        hil_mem_free(b);
        return NULL;
    }
    b[n] = 0;
    return b;
}

static cJSON *nvs_json(const char *key)
{
    char *s = nvs_string(key);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    hil_mem_free(s);
    return j;
}

/* ---------------------------------------------------------------- events */
static void set_state(conn_state st, const char *reason, int attempt, uint32_t next_ms, bool session_present)
{
    C.state = st;
    snprintf(C.reason, sizeof(C.reason), "%s", reason ? reason : "");
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "state", state_names[st]);
    if (reason && *reason) cJSON_AddStringToObject(d, "reason", reason);
    if (attempt) cJSON_AddNumberToObject(d, "attempt", attempt);
    if (next_ms) cJSON_AddNumberToObject(d, "nextMs", next_ms);
    if (session_present) cJSON_AddTrueToObject(d, "sessionPresent");
    hil_agent_event(&C.agent, "conn", d);
}

static cJSON *status_json(void)
{
    bool synced = false;
    int64_t now = hil_port_rtc_ms(&synced);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "state", state_names[C.state]);
    if (C.reason[0]) cJSON_AddStringToObject(d, "reason", C.reason);
    cJSON_AddNumberToObject(d, "connects", C.connects);
    cJSON_AddNumberToObject(d, "desiredVersion", (double)C.desired_ver);
    cJSON_AddNumberToObject(d, "clockUnixMs", (double)now);
    cJSON_AddBoolToObject(d, "clockSynced", synced);
    if (C.token_se) cJSON_AddNumberToObject(d, "tokenExpires", (double)C.token_se);
    return d;
}

static const char *const caps[] = {"sas", "x509", "c2d", "twin", "methods", "cert-rotation", "modules", "will",
                                   "persistent-session", "clean-session-1", "telemetry-qos0", "ctime", "module-x509",
                                   "local-twin-validation", "trust-update"};

static cJSON *hello_json(void)
{
    cJSON *d = cJSON_CreateObject();
    char cv[64];
    cJSON_AddNumberToObject(d, "proto", HIL_PROTO_VERSION);
    cJSON_AddStringToObject(d, "fw", FW_NAME);
    cJSON_AddStringToObject(d, "fwVersion", FW_VERSION);
    cJSON_AddStringToObject(d, "build", HIL_BUILD);
    cJSON_AddStringToObject(d, "client", "hilrun-c");
    snprintf(cv, sizeof(cv), "%s (%s %s)", FW_VERSION, hil_port_mqtt_lib(), hil_port_mqtt_lib_version());
    cJSON_AddStringToObject(d, "clientVersion", cv);
    cJSON_AddStringToObject(d, "board", hil_port_board());
    cJSON *cj = cJSON_CreateStringArray(caps, (int)(sizeof(caps) / sizeof(caps[0])));
    if (hil_port_has_sntp()) cJSON_AddItemToArray(cj, cJSON_CreateString("sntp"));
    cJSON_AddItemToObject(d, "caps", cj);
    cJSON_AddNumberToObject(d, "boot", hil_port_boot_count());
    cJSON_AddNumberToObject(d, "maxFrame", HIL_MAX_FRAME);
    return d;
}

/* ---------------------------------------------------------------- connection */
static void twin_free(twin_pending *t)
{
    hil_mem_free(t->body);
    memset(t, 0, sizeof(*t));
}

static void fail_twin_pending(const char *why)
{
    for (int i = 0; i < MAX_TWIN_PENDING; i++) {
        if (!C.twin[i].used) continue;
        if (C.twin[i].req) hil_agent_fail(&C.agent, C.twin[i].req, HIL_ERR_NOT_CONNECTED, "twin request $rid=%s: %s", C.twin[i].rid, why);
        twin_free(&C.twin[i]);
    }
}

static void fail_tel_pending(void)
{
    for (int i = 0; i < MAX_TEL_PENDING; i++) {
        if (!C.tel[i].used) continue;
        if (C.tel[i].req) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddNumberToObject(d, "ref", (double)C.tel[i].ref);
            cJSON_AddFalseToObject(d, "acked");
            cJSON_AddNumberToObject(d, "size", C.tel[i].size);
            cJSON_AddStringToObject(d, "error", "no PUBACK: connection lost or timed out");
            hil_agent_respond(&C.agent, C.tel[i].req, d);
        }
        C.tel[i].used = false;
    }
}

static void drop_methods(void)
{
    for (int i = 0; i < MAX_METHOD_PENDING; i++) {
        hil_mem_free(C.meth[i].payload);
        memset(&C.meth[i], 0, sizeof(C.meth[i]));
    }
}

static void end_connection(bool graceful)
{
    if (C.mqtt_up) hil_port_mqtt_disconnect(graceful);
    C.mqtt_up = false;
    C.renew_at_ms = 0;
    fail_twin_pending("connection lost");
    fail_tel_pending();
    drop_methods();
}

static const char *client_type(void)
{
    static char ct[80];
    snprintf(ct, sizeof(ct), FW_NAME "/" FW_VERSION " (%s %s)", hil_port_mqtt_lib(), hil_port_mqtt_lib_version());
    return ct;
}

static uint32_t retry_delay(int attempt);

static void schedule_clock(const char *reason, uint32_t delay)
{
    C.next_attempt = hil_port_uptime_ms() + delay;
    set_state(ST_BACKOFF, reason, C.sntp_attempt, delay, false);
}

/* CLOCK-001: no TLS and no token before the RTC holds UTC. Returns true
 * when the clock is set; else the wait (an SNTP query, or a backoff) is
 * under way and the attempt comes later. */
static bool clock_ready(void)
{
    bool synced = false;
    hil_port_rtc_ms(&synced);
    if (synced) return true;
    if (C.sntp_pending) return false;
    const char *server = cfg_str("sntp", "server");
    uint32_t mx = (uint32_t)cfg_num("retry", "maxMs", 60000);
    uint64_t now = hil_port_uptime_ms();
    char why[200];
    if (!*server) {
        schedule_clock("waiting for UTC time: no SNTP server configured", mx);
        return false;
    }
    if (C.sntp_hold_until > now && strcmp(C.sntp_hold_server, server) == 0) {
        snprintf(why, sizeof(why), "waiting for UTC time: SNTP server %.80s sent a kiss-o'-death; not asking it again yet", server);
        schedule_clock(why, (uint32_t)(C.sntp_hold_until - now));
        return false;
    }
    C.sntp_attempt++;
    uint32_t ini = (uint32_t)cfg_num("retry", "initialMs", 1000);
    int timeout = (int)(2 * ini < 200 ? 200 : 2 * ini > 5000 ? 5000 : 2 * ini);
    if (C.sntp_attempt == 1) hil_agent_log(&C.agent, 'I', "RTC not set: getting UTC time from %s before connecting", server);
    if (hil_port_sntp_query(server, timeout) != 0) {
        snprintf(why, sizeof(why), "waiting for UTC time: SNTP %.80s: query not sent", server);
        schedule_clock(why, retry_delay(C.sntp_attempt));
        return false;
    }
    C.sntp_pending = true;
    return false;
}

/* Start one connection attempt. */
static char *trust_anchors(void);

static void start_attempt(void)
{
    const char *host = cfg_str("hub", "host");
    const char *dev = cfg_str("identity", "deviceId");
    const char *mod = cfg_str("identity", "moduleId");
    const char *auth = cfg_str("auth", "type");
    if (!*host || !*dev || !*auth) {
        C.session = false;
        set_state(ST_STOPPED, "configuration incomplete (hub, identity, auth)", 0, 0, false);
        return;
    }
    static char username[512], password[768], client_id[260], dial[256], resource[512];
    int port = (int)cfg_num("hub", "port", 8883);
    snprintf(dial, sizeof(dial), "%s", cfg_str("hub", "address"));
    int dial_port = port;
    char *colon = strrchr(dial, ':');
    if (colon && dial[0]) {
        *colon = 0;
        dial_port = atoi(colon + 1);
    } else if (!dial[0]) {
        snprintf(dial, sizeof(dial), "%s", host);
    }
    if (dial[0] == '[') { /* [v6]:port */
        memmove(dial, dial + 1, strlen(dial));
        char *rb = strchr(dial, ']');
        if (rb) *rb = 0;
    }
    snprintf(client_id, sizeof(client_id), *mod ? "%s/%s" : "%s%s", dev, *mod ? mod : "");
    if (!clock_ready()) return;
    const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(C.cfg, "modelId"));
    if (hil_username(host, dev, mod, HIL_API_VERSION, client_type(), model, username, sizeof(username)) < 0) {
        C.session = false;
        set_state(ST_STOPPED, "Username too long", 0, 0, false);
        return;
    }
    hil_mqtt_params p;
    memset(&p, 0, sizeof(p));
    p.host = host;
    p.port = port;
    p.dial_host = dial;
    p.dial_port = dial_port;
    p.client_id = client_id;
    p.username = username;
    p.keepalive_s = (int)cfg_num("mqtt", "keepAliveS", 60);
    p.clean_session = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(section("mqtt"), "cleanSession"));
    /* Read at every attempt: trust.add / trust.clear apply to the next
     * connection without a reboot (CERT-003). */
    char *trust = trust_anchors();
    char *cert = NULL, *key = NULL;
    p.trust_pem = trust;
    C.token_se = 0;
    if (strcmp(auth, "sas") == 0) {
        bool synced;
        int64_t now = hil_port_rtc_ms(&synced);
        int ttl = (int)cfg_num("auth", "tokenTtlS", 3600);
        double frac = cfg_num("auth", "renewFraction", 0.8);
        int64_t se = now / 1000 + ttl;
        hil_resource_uri(host, dev, mod, resource, sizeof(resource));
        if (hil_sas_token(resource, cfg_str("auth", "key"), se, password, sizeof(password)) < 0) {
            hil_mem_free(trust);
            C.session = false;
            set_state(ST_STOPPED, "SAS token: bad key", 0, 0, false);
            return;
        }
        p.password = password;
        C.token_se = se;
        C.renew_at_ms = hil_sas_renew_at_ms(se, ttl, frac);
    } else {
        cert = nvs_string("cert");
        key = nvs_string("key");
        if (!cert || !key) {
            hil_mem_free(trust);
            hil_mem_free(cert);
            hil_mem_free(key);
            C.session = false;
            set_state(ST_STOPPED, "auth x509 needs a device certificate (cert.set)", 0, 0, false);
            return;
        }
        p.cert_pem = cert;
        p.key_pem = key;
        C.renew_at_ms = 0;
    }
    /* Subscriptions go out right after the CONNACK, before anything else
     * (TWIN-001), whenever the session is gone (CONN-017). */
    static char c2d[200];
    static const char *filters[4];
    static int qos[4] = {0, 0, 0, 1};
    hil_topic_c2d_filter(dev, c2d, sizeof(c2d));
    filters[0] = HIL_FILTER_TWIN_RES;
    filters[1] = HIL_FILTER_TWIN_DESIRED;
    filters[2] = HIL_FILTER_METHODS;
    filters[3] = c2d;
    p.filters = filters;
    p.filter_qos = qos;
    p.nfilters = *mod ? 3 : 4; /* modules have no C2D (MOD-010) */
    /* A Will goes to the identity's telemetry topic, with its properties
     * as the bag (CONN-021, MOD-004). */
    static char will_topic[1024];
    const cJSON *will = cJSON_GetObjectItemCaseSensitive(section("mqtt"), "will");
    if (cJSON_IsObject(will)) {
        hil_prop bag[16];
        size_t n = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(will, "props"))
        {
            if (n >= 16 || !cJSON_IsString(e)) continue;
            hil_prop pr = {e->string, e->valuestring, false};
            size_t k = n++;
            while (k > 0 && strcmp(bag[k - 1].name, pr.name) > 0) {
                bag[k] = bag[k - 1];
                k--;
            }
            bag[k] = pr;
        }
        if (hil_topic_telemetry(dev, mod, bag, n, will_topic, sizeof(will_topic)) > 0) {
            const char *wp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(will, "payload"));
            p.will_topic = will_topic;
            p.will_payload = wp ? wp : "";
        }
    }
    C.attempt++;
    set_state(ST_CONNECTING, NULL, C.attempt, 0, false);
    C.mqtt_up = true;
    int rc = hil_port_mqtt_connect(&p);
    memset(password, 0, sizeof(password));
    hil_mem_free(trust);
    if (key) memset(key, 0, strlen(key));
    hil_mem_free(cert);
    hil_mem_free(key);
    if (rc != 0) {
        C.mqtt_up = false;
        hil_core_mqtt_failed(0, "could not start the connection");
    }
}

static uint32_t retry_delay(int attempt)
{
    return hil_backoff_ms((uint32_t)cfg_num("retry", "initialMs", 1000), (uint32_t)cfg_num("retry", "maxMs", 60000),
                          (uint32_t)cfg_num("retry", "jitterPct", 20), attempt, hil_port_random());
}

static void schedule_retry(const char *reason, uint32_t delay)
{
    /* The whole delay is waited after the failure: backoff is a wait
     * before the next try (002 L16709, L16715), so a slow attempt (a long
     * TLS handshake on a loaded link) does not shorten it. */
    C.next_attempt = hil_port_uptime_ms() + delay;
    set_state(ST_BACKOFF, reason, C.attempt, delay, false);
}

/* The hub refused the device certificate (CONNACK 4/5): present the
 * secondary certificate from cert.set slot "secondary" instead (CERT-006),
 * once per connection that worked since the last swap. */
static bool swap_to_secondary(int rc)
{
    if (strcmp(cfg_str("auth", "type"), "x509") != 0) return false;
    if (C.swap_connects >= 0 && C.connects <= C.swap_connects) return false;
    char *c2 = nvs_string("cert2"), *k2 = nvs_string("key2");
    char *c1 = nvs_string("cert"), *k1 = nvs_string("key");
    bool ok = c2 && k2 && c1 && k1;
    if (ok) {
        ok = hil_port_nvs_set("cert", c2, strlen(c2)) == 0 && hil_port_nvs_set("key", k2, strlen(k2)) == 0 &&
             hil_port_nvs_set("cert2", c1, strlen(c1)) == 0 && hil_port_nvs_set("key2", k1, strlen(k1)) == 0;
    }
    if (k1) memset(k1, 0, strlen(k1));
    if (k2) memset(k2, 0, strlen(k2));
    hil_mem_free(c1), hil_mem_free(k1), hil_mem_free(c2), hil_mem_free(k2);
    if (!ok) return false;
    C.swap_connects = C.connects;
    hil_agent_log(&C.agent, 'W', "hub refused the device certificate (CONNACK %d): switching to the secondary certificate", rc);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "kind", "cert-rotated");
    hil_agent_event(&C.agent, "creds.renewed", d);
    return true;
}

void hil_core_mqtt_failed(int rc, const char *reason)
{
    if (!C.mqtt_up && rc != 0) return;
    C.mqtt_up = false;
    if (!C.session) return;
    char why[200];
    if (rc > 0) snprintf(why, sizeof(why), "CONNACK %d: %s", rc, reason);
    else snprintf(why, sizeof(why), "%s", reason);
    /* Unrecoverable (RECON-004): refused credentials or identity, or a
     * server that fails TLS verification. */
    if ((rc == 4 || rc == 5) && swap_to_secondary(rc)) {
        schedule_retry(why, retry_delay(C.attempt));
        return;
    }
    if (rc == 1 || rc == 2 || rc == 4 || rc == 5 || rc == -1) {
        C.session = false;
        set_state(ST_STOPPED, why, C.attempt, 0, false);
        return;
    }
    uint32_t d = retry_delay(C.attempt);
    if (rc == 3) { /* server unavailable / throttled (RECON-003) */
        uint32_t mx = (uint32_t)cfg_num("retry", "maxMs", 60000);
        uint32_t floor_ms = THROTTLED_MIN_BACKOFF_MS < mx ? THROTTLED_MIN_BACKOFF_MS : mx;
        if (d < floor_ms) d = floor_ms;
    }
    schedule_retry(why, d);
}

/* (Re)send the request of slot t with a fresh $rid (TWIN-002, TWIN-003). */
static bool twin_send(twin_pending *t)
{
    snprintf(t->rid, sizeof(t->rid), "%lu", (unsigned long)++C.rid_seq);
    char topic[96];
    if (t->kind == TW_REPORT) hil_topic_twin_reported(t->rid, topic, sizeof(topic));
    else hil_topic_twin_get(t->rid, topic, sizeof(topic));
    int mid;
    if (hil_port_mqtt_publish(topic, t->body, t->body ? strlen(t->body) : 0, 0, &mid) != 0) return false;
    t->tries++;
    t->resend_at = 0;
    t->deadline = hil_port_uptime_ms() + (uint64_t)cfg_num("twin", "timeoutMs", 20000);
    return true;
}

static bool twin_publish(twin_kind kind, uint32_t req, const char *body, char *rid_out)
{
    int slot = -1;
    for (int i = 0; i < MAX_TWIN_PENDING; i++)
        if (!C.twin[i].used) {
            slot = i;
            break;
        }
    if (slot < 0) return false;
    twin_pending *t = &C.twin[slot];
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->req = req;
    if (body) {
        size_t n = strlen(body) + 1;
        t->body = hil_mem_alloc(n);
        if (!t->body) return false;
        memcpy(t->body, body, n);
    }
    if (!twin_send(t)) {
        twin_free(t);
        return false;
    }
    t->used = true;
    if (rid_out) strcpy(rid_out, t->rid);
    return true;
}

#define TWIN_RETRY_ATTEMPTS 6
#define RESYNC_ATTEMPTS 3

/* 429 and every 5xx are tried again with backoff, after 429 no sooner than
 * the throttled minimum (TWIN-005, RECON-003); true when t was kept. */
static bool twin_retry(twin_pending *t, int status)
{
    bool throttled = status == 429, server = status >= 500 && status <= 599;
    int max_tries = t->kind == TW_RESYNC ? RESYNC_ATTEMPTS : TWIN_RETRY_ATTEMPTS;
    if ((!throttled && !server) || t->tries >= max_tries) return false;
    uint32_t d = retry_delay(t->tries);
    if (throttled) {
        uint32_t mx = (uint32_t)cfg_num("retry", "maxMs", 60000);
        uint32_t fl = THROTTLED_MIN_BACKOFF_MS < mx ? THROTTLED_MIN_BACKOFF_MS : mx;
        if (d < fl) d = fl;
    }
    hil_agent_log(&C.agent, 'W', "twin request $rid=%s answered %d; retrying in %lu ms", t->rid, status, (unsigned long)d);
    t->resend_at = hil_port_uptime_ms() + d;
    t->deadline = 0;
    return true;
}

void hil_core_mqtt_connected(bool session_present)
{
    if (!C.mqtt_up || !C.session) return;
    /* The port subscribed to the filters of hil_mqtt_params (when no
     * session was present) before reporting the CONNACK. */
    C.attempt = 0;
    C.connects++;
    C.up_at = hil_port_uptime_ms();
    /* The held twin is refreshed by a GET after every connect (TWIN-010). */
    twin_publish(TW_RESYNC, 0, NULL, NULL);
    set_state(ST_CONNECTED, NULL, 0, 0, session_present);
    if (C.pending_creds) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "kind", C.pending_creds);
        if (C.token_se) cJSON_AddNumberToObject(d, "se", (double)C.token_se);
        hil_agent_event(&C.agent, "creds.renewed", d);
        C.pending_creds = NULL;
    }
}

void hil_core_mqtt_lost(const char *reason)
{
    if (!C.mqtt_up) return;
    C.mqtt_up = false;
    end_connection(false);
    if (!C.session) return;
    hil_agent_log(&C.agent, 'W', "connection lost: %s", reason);
    /* A connection lost before it was stable (it lived less than the
     * backoff cap) does not reset the backoff: a duplicate identity taking
     * the connection over meets growing gaps, not a ping-pong (RECON-009);
     * a single loss still waits the initial delay (RECON-001). */
    if (hil_port_uptime_ms() - C.up_at < (uint64_t)cfg_num("retry", "maxMs", 60000)) C.quick++;
    else C.quick = 1;
    C.attempt = C.quick;
    schedule_retry("connection lost", retry_delay(C.attempt));
}

/* Deliberate reconnect (renewal, rotation): DISCONNECT, connect at once. */
static void reconnect_now(const char *reason)
{
    end_connection(true);
    set_state(ST_CONNECTING, reason, 0, 0, false);
    C.attempt = 0;
    start_attempt();
}

/* ---------------------------------------------------------------- inbound */
static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char h[32];
#if MBEDTLS_VERSION_MAJOR >= 3
    mbedtls_sha256((const unsigned char *)p, n, h, 0);
#else
    mbedtls_sha256_ret((const unsigned char *)p, n, h, 0);
#endif
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static cJSON *string_n(const void *p, size_t n)
{
    char *s = hil_mem_alloc(n + 1);
    if (!s) return cJSON_CreateNull();
    memcpy(s, p, n);
    s[n] = 0;
    cJSON *j = cJSON_CreateString(s);
    hil_mem_free(s);
    return j;
}

static void on_c2d(const char *topic, const hil_topic *t, const void *payload, size_t len, bool dup)
{
    /* IoT Hub sets no count on a C2D message's application properties, only
     * the topic's length carries them (C2D-007): room for a bag far past what
     * the suite sends (40), static so the task stack stays small. A bag that
     * still does not fit is reported as no properties, never cut. */
    static char store[8192];
    static hil_prop props[128];
    int n = hil_bag_parse(t->bag, t->bag_len, store, sizeof(store), props, sizeof(props) / sizeof(props[0]));
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "topic", topic);
    cJSON *pj = cJSON_AddObjectToObject(d, "props");
    const char *mid = NULL;
    for (int i = 0; i < n; i++) {
        if (cJSON_GetObjectItemCaseSensitive(pj, props[i].name)) continue; /* first wins */
        cJSON_AddStringToObject(pj, props[i].name, props[i].value);
        if (!mid && strcmp(props[i].name, "$.mid") == 0) mid = props[i].value;
    }
    if (len) cJSON_AddItemToObject(d, "payload", string_n(payload, len < 512 ? len : 512));
    cJSON_AddNumberToObject(d, "size", (double)len);
    char hex[65];
    sha256_hex(payload, len, hex);
    cJSON_AddStringToObject(d, "sha256", hex);
    if (dup) cJSON_AddTrueToObject(d, "dup");
    if (mid && *mid) { /* $.mid dedup (C2D-004) */
        bool seen = false;
        for (int i = 0; i < SEEN_C2D; i++)
            if (strncmp(C.seen[i], mid, sizeof(C.seen[i]) - 1) == 0 && C.seen[i][0]) seen = true;
        if (seen) cJSON_AddTrueToObject(d, "duplicate");
        else {
            snprintf(C.seen[C.seen_next], sizeof(C.seen[0]), "%s", mid);
            C.seen_next = (C.seen_next + 1) % SEEN_C2D;
        }
    }
    hil_agent_event(&C.agent, "c2d", d);
}

static int64_t version_of(const cJSON *o)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "$version");
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

/* A copy of o without $-keys ($version, $metadata). */
static cJSON *strip_meta(const cJSON *o)
{
    cJSON *c = cJSON_CreateObject();
    const cJSON *e;
    cJSON_ArrayForEach(e, o)
    {
        if (e->string && e->string[0] == '$') continue;
        cJSON_AddItemToObject(c, e->string, cJSON_Duplicate(e, 1));
    }
    return c;
}

/* JSON merge patch of patch into target (null deletes). */
static void merge(cJSON *target, const cJSON *patch)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, patch)
    {
        if (!e->string || e->string[0] == '$') continue;
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(target, e->string);
        if (cJSON_IsNull(e)) {
            cJSON_DeleteItemFromObjectCaseSensitive(target, e->string);
        } else if (cJSON_IsObject(e) && cJSON_IsObject(cur)) {
            merge(cur, e);
        } else {
            cJSON *copy = cJSON_IsObject(e) ? strip_meta(e) : cJSON_Duplicate(e, 1);
            if (cJSON_IsObject(e)) {
                cJSON *tmp = cJSON_CreateObject();
                merge(tmp, e);
                cJSON_Delete(copy);
                copy = tmp;
            }
            if (cur) cJSON_ReplaceItemInObjectCaseSensitive(target, e->string, copy);
            else cJSON_AddItemToObject(target, e->string, copy);
        }
    }
}

static bool fits_event(const cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    bool ok = s && strlen(s) <= MAX_EVENT_DOC;
    hil_mem_free(s);
    return ok;
}

static void on_desired(const void *payload, size_t len)
{
    cJSON *patch = cJSON_ParseWithLength(payload, len);
    if (!cJSON_IsObject(patch)) {
        hil_agent_log(&C.agent, 'E', "desired patch is not a JSON object");
        cJSON_Delete(patch);
        return;
    }
    int64_t v = version_of(patch);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "version", (double)v);
    if (hil_twin_patch_applies(C.desired_ver, v)) {
        if (!C.desired) C.desired = cJSON_CreateObject();
        merge(C.desired, patch);
        C.desired_ver = v;
        cJSON_AddTrueToObject(d, "applied");
    } else {
        char why[80];
        snprintf(why, sizeof(why), "stale: version %lld <= %lld", (long long)v, (long long)C.desired_ver);
        cJSON_AddFalseToObject(d, "applied");
        cJSON_AddStringToObject(d, "reason", why);
    }
    if (len <= MAX_EVENT_DOC) cJSON_AddItemToObject(d, "patch", strip_meta(patch));
    if (C.desired && fits_event(C.desired)) cJSON_AddItemToObject(d, "desired", strip_meta(C.desired));
    cJSON_Delete(patch);
    hil_agent_event(&C.agent, "twin.desired", d);
}

static void on_twin_response(const hil_topic *t, const void *payload, size_t len)
{
    twin_pending *p = NULL;
    for (int i = 0; i < MAX_TWIN_PENDING; i++)
        if (C.twin[i].used && !C.twin[i].resend_at && strlen(C.twin[i].rid) == t->rid_len && memcmp(C.twin[i].rid, t->rid, t->rid_len) == 0) p = &C.twin[i];
    if (!p) {
        hil_agent_log(&C.agent, 'W', "twin response for unknown $rid=%.*s ignored", (int)t->rid_len, t->rid);
        return;
    }
    bool ok = t->status >= 200 && t->status < 300;
    if (!ok && twin_retry(p, t->status)) return;
    twin_pending done = *p;
    memset(p, 0, sizeof(*p)); /* the slot is free; done owns the body */
    hil_mem_free(done.body);
    p = &done;
    p->body = NULL;
    if (p->kind == TW_REPORT) {
        if (!ok) {
            hil_agent_fail(&C.agent, p->req, HIL_ERR_REJECTED, "reported PATCH answered status %d: %.*s", t->status, (int)(len > 100 ? 100 : len), (const char *)payload);
            return;
        }
        if (t->has_version) C.reported_ver = t->version;
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "status", t->status);
        cJSON_AddNumberToObject(d, "version", (double)t->version);
        hil_agent_respond(&C.agent, p->req, d);
        return;
    }
    if (!ok) {
        if (p->req) hil_agent_fail(&C.agent, p->req, HIL_ERR_REJECTED, "twin GET answered status %d", t->status);
        else hil_agent_log(&C.agent, 'E', "twin resync answered %d", t->status);
        return;
    }
    cJSON *doc = cJSON_ParseWithLength(payload, len);
    cJSON *des = cJSON_GetObjectItemCaseSensitive(doc, "desired");
    cJSON *rep = cJSON_GetObjectItemCaseSensitive(doc, "reported");
    if (!cJSON_IsObject(doc)) {
        if (p->req) hil_agent_fail(&C.agent, p->req, HIL_ERR_INTERNAL, "twin document is not a JSON object");
        cJSON_Delete(doc);
        return;
    }
    int64_t dv = version_of(des), rv = version_of(rep);
    if (hil_twin_get_applies(C.desired_ver, dv)) {
        cJSON_Delete(C.desired);
        C.desired = des ? strip_meta(des) : cJSON_CreateObject();
        C.desired_ver = dv;
    }
    C.reported_ver = rv;
    if (p->kind == TW_RESYNC) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "desiredVersion", (double)dv);
        cJSON_AddNumberToObject(d, "reportedVersion", (double)rv);
        hil_agent_event(&C.agent, "twin.resync", d);
    } else {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddItemToObject(d, "desired", des ? strip_meta(des) : cJSON_CreateObject());
        cJSON_AddItemToObject(d, "reported", rep ? strip_meta(rep) : cJSON_CreateObject());
        cJSON_AddNumberToObject(d, "desiredVersion", (double)dv);
        cJSON_AddNumberToObject(d, "reportedVersion", (double)rv);
        cJSON_AddNumberToObject(d, "status", t->status);
        hil_agent_respond(&C.agent, p->req, d);
    }
    cJSON_Delete(doc);
}

static void method_send(int status, const char *rid, const char *name, int size, const char *payload)
{
    char topic[160];
    int mid;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", name);
    cJSON_AddStringToObject(d, "rid", rid);
    if (hil_topic_method_response(status, rid, topic, sizeof(topic)) >= 0 &&
        hil_port_mqtt_publish(topic, payload, strlen(payload), 0, &mid) == 0) {
        cJSON_AddNumberToObject(d, "status", status);
    } else {
        hil_agent_log(&C.agent, 'W', "method %s response not sent", name);
    }
    cJSON_AddNumberToObject(d, "size", size);
    hil_agent_event(&C.agent, "method.invoked", d);
}

static int obj_int(const cJSON *o, const char *k)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(n) ? (int)n->valuedouble : 0;
}

/* A direct method: answered per the behaviour in NVS (exact name, else
 * "*", else 404 "{}") on $iothub/methods/res/{status}/?$rid={rid}, the rid
 * echoed verbatim (METH-002..012). */
static void on_method(const hil_topic *t, size_t len)
{
    char name[64], rid[64];
    snprintf(name, sizeof(name), "%.*s", (int)t->method_len, t->method);
    snprintf(rid, sizeof(rid), "%.*s", (int)t->rid_len, t->rid);
    cJSON *methods = nvs_json("methods");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(methods, name);
    if (!b) b = cJSON_GetObjectItemCaseSensitive(methods, "*");
    int status = 404, delay = 0;
    const char *payload = "{}";
    char *genbody = NULL;
    bool silent = false;
    if (b) {
        status = obj_int(b, "status");
        if (status == 0) status = 200;
        const char *pl = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "payload"));
        payload = pl ? pl : "";
        silent = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "silent"));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "fail"))) {
            /* The handler "throws": an error status and a JSON body (METH-011). */
            if (status < 400) status = 500;
            payload = "{\"error\":\"handler failed\"}";
        }
        delay = obj_int(b, "delayMs");
        /* gen: a generated body of size bytes, a JSON string literal, so a
         * body near the 128 KB limit (METH-005) need not cross the UART. */
        const cJSON *gen = cJSON_GetObjectItemCaseSensitive(b, "gen");
        int gsize = obj_int(gen, "size");
        if (cJSON_IsObject(gen) && gsize >= 2 && gsize <= 512 * 1024 && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "fail"))) {
            genbody = hil_mem_alloc((size_t)gsize + 1);
            if (genbody) {
                double seed = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(gen, "seed"));
                genbody[0] = '"';
                hil_generate(genbody + 1, (size_t)gsize - 2, seed >= 0 && seed <= 4294967295.0 ? (uint32_t)seed : 0);
                genbody[gsize - 1] = '"';
                genbody[gsize] = 0;
                payload = genbody;
            }
        }
    }
    if (silent) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", name);
        cJSON_AddStringToObject(d, "rid", rid);
        cJSON_AddNumberToObject(d, "size", (double)len);
        hil_agent_event(&C.agent, "method.invoked", d);
    } else if (delay > 0) {
        int slot = -1;
        for (int i = 0; i < MAX_METHOD_PENDING; i++)
            if (!C.meth[i].used) slot = i;
        if (slot < 0) {
            hil_agent_log(&C.agent, 'W', "too many delayed methods; %s answered now", name);
            method_send(status, rid, name, (int)len, payload);
        } else {
            method_pending *m = &C.meth[slot];
            m->used = true;
            m->due = hil_port_uptime_ms() + (uint64_t)delay;
            m->status = status;
            snprintf(m->rid, sizeof(m->rid), "%s", rid);
            snprintf(m->name, sizeof(m->name), "%s", name);
            m->size = (int)len;
            size_t pl = strlen(payload) + 1;
            m->payload = hil_mem_alloc(pl);
            if (m->payload) memcpy(m->payload, payload, pl);
        }
    } else {
        method_send(status, rid, name, (int)len, payload);
    }
    hil_mem_free(genbody);
    cJSON_Delete(methods);
}

void hil_core_mqtt_message(const char *topic, const void *payload, size_t len, bool dup)
{
    if (!C.mqtt_up) return;
    hil_topic t;
    int rc = hil_topic_parse(topic, &t);
    if (rc < 0 && t.kind == HIL_TOPIC_UNKNOWN) {
        hil_agent_log(&C.agent, 'W', "inbound PUBLISH on unexpected topic %.100s", topic);
        return;
    }
    switch (t.kind) {
    case HIL_TOPIC_C2D:
        on_c2d(topic, &t, payload, len, dup);
        break;
    case HIL_TOPIC_TWIN_RESPONSE:
        on_twin_response(&t, payload, len);
        break;
    case HIL_TOPIC_TWIN_DESIRED:
        on_desired(payload, len);
        break;
    case HIL_TOPIC_METHOD_REQUEST:
        on_method(&t, len);
        break;
    default:
        hil_agent_log(&C.agent, 'W', "inbound PUBLISH of kind %s ignored", hil_topic_kind_name(t.kind));
    }
}

void hil_core_mqtt_published(int msg_id)
{
    for (int i = 0; i < MAX_TEL_PENDING; i++) {
        tel_pending *p = &C.tel[i];
        if (!p->used || p->msg_id != msg_id) continue;
        p->used = false;
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "ref", (double)p->ref);
        cJSON_AddTrueToObject(d, "acked");
        cJSON_AddNumberToObject(d, "size", p->size);
        if (p->req) hil_agent_respond(&C.agent, p->req, cJSON_Duplicate(d, 1));
        hil_agent_event(&C.agent, "telemetry.acked", d);
        return;
    }
}

/* SNTP answer (CLOCK-001): the clock is set and the connection attempt
 * goes ahead, or the next query waits with backoff; a kiss-o'-death holds
 * that server off, RATE for the retry cap, anything else (DENY, RSTR) for
 * five times that, like devicefw/sim. */
void hil_core_sntp_result(bool ok, int64_t unix_ms, const char *kiss_code, const char *error)
{
    C.sntp_pending = false;
    if (!C.session) return;
    const char *server = cfg_str("sntp", "server");
    if (ok) {
        hil_port_rtc_set(unix_ms, true);
        hil_agent_log(&C.agent, 'I', "SNTP: clock set from %s", server);
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "unixMs", (double)unix_ms);
        cJSON_AddTrueToObject(d, "synced");
        hil_agent_event(&C.agent, "clock.synced", d);
        C.sntp_attempt = 0;
        start_attempt();
        return;
    }
    char why[200];
    uint32_t delay = retry_delay(C.sntp_attempt);
    if (kiss_code && *kiss_code) {
        uint32_t mx = (uint32_t)cfg_num("retry", "maxMs", 60000);
        delay = strcmp(kiss_code, "RATE") == 0 ? mx : 5 * mx;
        C.sntp_hold_until = hil_port_uptime_ms() + delay;
        snprintf(C.sntp_hold_server, sizeof(C.sntp_hold_server), "%s", server);
        snprintf(why, sizeof(why), "waiting for UTC time: SNTP %.80s: kiss-o'-death \"%.4s\"", server, kiss_code);
    } else {
        snprintf(why, sizeof(why), "waiting for UTC time: SNTP %.80s: %.80s", server, error ? error : "failed");
    }
    schedule_clock(why, delay);
}

/* ---------------------------------------------------------------- operations */
#define ARG(name) cJSON_GetObjectItemCaseSensitive(args, name)

static void ok(hil_result *r, cJSON *data)
{
    r->kind = HIL_RES_OK;
    r->data = data;
}

static void op_hello(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id, (void)args;
    ok(r, hello_json());
}

static void op_echo(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id;
    const cJSON *d = ARG("data");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "data", cJSON_IsString(d) ? d->valuestring : "");
    ok(r, o);
}

static bool valid_b64(const char *s)
{
    unsigned char buf[128];
    size_t n = 0;
    return s && *s && mbedtls_base64_decode(buf, sizeof(buf), &n, (const unsigned char *)s, strlen(s)) == 0 && n > 0;
}

static void op_configure(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id;
    static const char *const sections[] = {"hub", "identity", "auth", "mqtt", "retry", "modelId", "wifi", "sntp", "twin"};
    const cJSON *auth = ARG("auth");
    if (auth) {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(auth, "type"));
        if (!type || (strcmp(type, "sas") && strcmp(type, "x509"))) {
            hil_result_err(r, HIL_ERR_BAD_ARGS, "auth.type: want sas or x509");
            return;
        }
        if (!strcmp(type, "sas") && !valid_b64(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(auth, "key")))) {
            hil_result_err(r, HIL_ERR_BAD_ARGS, "auth.key must be a base64 SAS key");
            return;
        }
        const cJSON *rf = cJSON_GetObjectItemCaseSensitive(auth, "renewFraction");
        if (cJSON_IsNumber(rf) && (rf->valuedouble < 0 || rf->valuedouble >= 1)) {
            hil_result_err(r, HIL_ERR_BAD_ARGS, "auth.renewFraction must be in [0,1)");
            return;
        }
    }
    const cJSON *ident = ARG("identity");
    if (ident && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ident, "deviceId"))) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "identity needs deviceId");
        return;
    }
    const cJSON *hub = ARG("hub");
    const char *tr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(hub, "transport"));
    if (tr && *tr && strcmp(tr, "mqtts")) {
        hil_result_err(r, HIL_ERR_UNSUPPORTED, "hub.transport %s: this firmware speaks mqtts only", tr);
        return;
    }
    const cJSON *defects = ARG("defects");
    if (cJSON_GetArraySize(defects) > 0) {
        hil_result_err(r, HIL_ERR_UNSUPPORTED, "defect switches are not supported by %s", FW_NAME);
        return;
    }
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        const cJSON *s = ARG(sections[i]);
        if (!s || cJSON_IsNull(s) || (cJSON_IsString(s) && !*s->valuestring)) continue;
        cJSON *copy = cJSON_Duplicate(s, 1);
        if (cJSON_GetObjectItemCaseSensitive(C.cfg, sections[i])) cJSON_ReplaceItemInObjectCaseSensitive(C.cfg, sections[i], copy);
        else cJSON_AddItemToObject(C.cfg, sections[i], copy);
    }
    save_config();
    const cJSON *wifi = section("wifi");
    if (wifi) hil_port_wifi_start(cfg_str("wifi", "ssid"), cfg_str("wifi", "password"));
    ok(r, status_json());
}

static void op_status(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id, (void)args;
    ok(r, status_json());
}

static void op_trust_clear(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id, (void)args;
    hil_port_nvs_erase("trust");
    ok(r, NULL);
}

static int count_certs(const char *pem)
{
    int n = 0;
    for (const char *p = pem; p && (p = strstr(p, "-----BEGIN CERTIFICATE-----")); p++) n++;
    return n;
}

/* The server chain's anchors: the configured roots, then the factory
 * bundle of the port. */
static char *trust_anchors(void)
{
    char *cur = nvs_string("trust");
    const char *fac = hil_port_factory_trust_pem();
    size_t a = cur ? strlen(cur) : 0, b = fac ? strlen(fac) : 0;
    char *all = hil_mem_alloc(a + b + 2);
    if (!all) return cur;
    memcpy(all, cur ? cur : "", a);
    if (a && all[a - 1] != '\n') all[a++] = '\n';
    memcpy(all + a, fac ? fac : "", b);
    all[a + b] = 0;
    hil_mem_free(cur);
    return all;
}

/* trust.list: configured roots, then the factory bundle, optionally only
 * those among args.sha256; trimmed to what one frame holds. */
static void op_trust_list(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id;
    const cJSON *filter = ARG("sha256");
    if (filter && !cJSON_IsNull(filter)) {
        const cJSON *e;
        if (!cJSON_IsArray(filter)) {
            hil_result_err(r, HIL_ERR_BAD_ARGS, "sha256 must be an array of fingerprints");
            return;
        }
        cJSON_ArrayForEach(e, filter)
        {
            if (!cJSON_IsString(e)) {
                hil_result_err(r, HIL_ERR_BAD_ARGS, "sha256 must be an array of fingerprints");
                return;
            }
        }
    } else {
        filter = NULL;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON *roots = cJSON_AddArrayToObject(d, "roots");
    char *cur = nvs_string("trust");
    hil_trust_list_append(roots, cur, "configured", filter);
    hil_mem_free(cur);
    hil_trust_list_append(roots, hil_port_factory_trust_pem(), "factory", filter);
    /* A response frame is at most HIL_MAX_FRAME with its envelope: drop
     * trailing roots until the data fits (the host asks with a filter). */
    for (;;) {
        char *s = cJSON_PrintUnformatted(d);
        size_t n = s ? strlen(s) : 0;
        cJSON_free(s);
        if (n <= HIL_MAX_FRAME - 256 || cJSON_GetArraySize(roots) == 0) break;
        cJSON_DeleteItemFromArray(roots, cJSON_GetArraySize(roots) - 1);
    }
    ok(r, d);
}

static void op_trust_add(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id;
    const char *pem = cJSON_GetStringValue(ARG("pem"));
    if (!pem || !strstr(pem, "-----BEGIN CERTIFICATE-----")) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "trust.add needs a PEM certificate");
        return;
    }
    char *cur = nvs_string("trust");
    size_t a = cur ? strlen(cur) : 0, b = strlen(pem);
    char *all = hil_mem_alloc(a + b + 2);
    if (!all) {
        hil_mem_free(cur);
        hil_result_err(r, HIL_ERR_INTERNAL, "out of memory");
        return;
    }
    memcpy(all, cur ? cur : "", a);
    memcpy(all + a, pem, b);
    size_t n = a + b;
    if (n && all[n - 1] != '\n') all[n++] = '\n';
    all[n] = 0;
    hil_mem_free(cur);
    if (hil_port_nvs_set("trust", all, n) != 0) {
        hil_mem_free(all);
        hil_result_err(r, HIL_ERR_INTERNAL, "NVS full");
        return;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "roots", count_certs(all));
    hil_mem_free(all);
    ok(r, d);
}

static void op_cert_set(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id;
    const char *pem = cJSON_GetStringValue(ARG("pem"));
    const char *key = cJSON_GetStringValue(ARG("keyPem"));
    const char *slot = cJSON_GetStringValue(ARG("slot"));
    if (!pem || !key || !strstr(pem, "-----BEGIN CERTIFICATE-----") || !strstr(key, "PRIVATE KEY-----")) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "cert.set needs pem and keyPem");
        return;
    }
    bool secondary = slot && *slot;
    if (secondary && strcmp(slot, "secondary") != 0) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "cert.set slot %.32s: want \"secondary\" or none", slot);
        return;
    }
    if (hil_port_nvs_set(secondary ? "cert2" : "cert", pem, strlen(pem)) || hil_port_nvs_set(secondary ? "key2" : "key", key, strlen(key))) {
        hil_result_err(r, HIL_ERR_INTERNAL, "NVS full");
        return;
    }
    if (!secondary) { /* the device certificate replaced: a secondary one is forgotten */
        hil_port_nvs_erase("cert2");
        hil_port_nvs_erase("key2");
    }
    C.swap_connects = -1;
    ok(r, NULL);
}

static void op_open(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id, (void)args;
    if (!*cfg_str("hub", "host")) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "no hub configured (configure {\"hub\":{\"host\":...}})");
        return;
    }
    if (!*cfg_str("identity", "deviceId")) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "no identity configured");
        return;
    }
    if (!*cfg_str("auth", "type")) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "no auth configured");
        return;
    }
    if (!C.session) {
        C.session = true;
        C.attempt = 0;
        C.sntp_attempt = 0;
        C.quick = 0;
        /* The held twin belongs to the previous session (TWIN-010). */
        cJSON_Delete(C.desired);
        C.desired = NULL;
        C.desired_ver = C.reported_ver = 0;
        start_attempt();
        ok(r, status_json());
        return;
    }
    /* Already open: no second loop, no new connection (PROTOCOL.md §4). */
    cJSON *st = status_json();
    cJSON_AddTrueToObject(st, "already");
    ok(r, st);
}

static void op_close(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id;
    const cJSON *g = ARG("graceful");
    bool graceful = !cJSON_IsFalse(g);
    if (C.session || C.mqtt_up) {
        C.session = false;
        end_connection(graceful);
        set_state(ST_IDLE, graceful ? "client.close" : "client.close (no DISCONNECT)", 0, 0, false);
    }
    ok(r, status_json());
}

static void op_telemetry(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx;
    const cJSON *gen = ARG("gen");
    const char *payload = cJSON_GetStringValue(ARG("payload"));
    size_t plen = payload ? strlen(payload) : 0;
    char *genbuf = NULL;
    if (gen) {
        double size = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(gen, "size"));
        double seed = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(gen, "seed"));
        if (!(size >= 0 && size <= 4.0 * MAX_TELEMETRY_BYTES)) {
            hil_result_err(r, HIL_ERR_BAD_ARGS, "gen.size outside 0..%d", 4 * MAX_TELEMETRY_BYTES);
            return;
        }
        plen = (size_t)size;
        genbuf = malloc(plen + 1); /* payload buffer: counted apart */
        hil_mem_note_payload(plen + 1);
        if (!genbuf) {
            hil_result_err(r, HIL_ERR_INTERNAL, "out of memory for %zu bytes", plen);
            return;
        }
        hil_generate(genbuf, plen, seed >= 0 && seed <= 4294967295.0 ? (uint32_t)seed : 0);
        payload = genbuf;
    }
    const cJSON *mq = cJSON_GetObjectItemCaseSensitive(section("mqtt"), "qos");
    int qos = cJSON_IsNumber(mq) && (mq->valueint == 0 || mq->valueint == 1) ? mq->valueint : 1;
    const cJSON *q = ARG("qos");
    if (cJSON_IsNumber(q)) {
        if (q->valueint != 0 && q->valueint != 1) {
            free(genbuf);
            hil_result_err(r, HIL_ERR_BAD_ARGS, "qos %d: IoT Hub takes 0 or 1 (CONN-020)", q->valueint);
            return;
        }
        qos = q->valueint;
    }
    hil_prop bag[40];
    size_t n = 0;
    const char *mid = cJSON_GetStringValue(ARG("messageId"));
    const char *ct = cJSON_GetStringValue(ARG("contentType"));
    char ctime[48];
    if (mid && *mid) bag[n++] = (hil_prop){"$.mid", mid, false};
    if (ct && *ct) {
        bag[n++] = (hil_prop){"$.ct", ct, false};
        bag[n++] = (hil_prop){"$.ce", "utf-8", false};
    }
    if (cJSON_IsTrue(ARG("ctime"))) { /* UTC from the RTC (TEL-012) */
        bool synced;
        int64_t ms = hil_port_rtc_ms(&synced);
        if (ms < 0) ms = 0;
        int64_t days = ms / 86400000, rem = ms % 86400000;
        /* civil from days (Howard Hinnant) */
        int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365, y = yoe + era * 400;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
        int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
        if (m <= 2) y++;
        snprintf(ctime, sizeof(ctime), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y, (int)m, (int)d, (int)(rem / 3600000),
                 (int)(rem / 60000 % 60), (int)(rem / 1000 % 60), (int)(rem % 1000 + 1000) % 1000);
        bag[n++] = (hil_prop){"$.ctime", ctime, false};
    }
    /* application properties, sorted by name */
    const cJSON *props = ARG("props");
    size_t app0 = n;
    const cJSON *e;
    cJSON_ArrayForEach(e, props)
    {
        if (n >= sizeof(bag) / sizeof(bag[0])) break;
        if (!cJSON_IsString(e)) continue;
        hil_prop pr = {e->string, e->valuestring, false};
        size_t k = n++;
        while (k > app0 && strcmp(bag[k - 1].name, pr.name) > 0) {
            bag[k] = bag[k - 1];
            k--;
        }
        bag[k] = pr;
    }
    /* TEL-007: names equal ignoring case */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            const char *a = bag[i].name, *b = bag[j].name;
            size_t la = strlen(a);
            bool same = la == strlen(b);
            for (size_t k = 0; same && k < la; k++) {
                char x = a[k], y = b[k];
                if (x >= 'A' && x <= 'Z') x += 32;
                if (y >= 'A' && y <= 'Z') y += 32;
                same = x == y;
            }
            if (same) {
                free(genbuf);
                hil_result_err(r, HIL_ERR_BAD_ARGS, "properties \"%s\" and \"%s\" are equal ignoring case; IoT Hub keeps only one (TEL-007)", a, b);
                return;
            }
        }
    size_t size = plen;
    for (size_t i = 0; i < n; i++) size += strlen(bag[i].value) + (bag[i].name[0] == '$' && bag[i].name[1] == '.' ? 0 : strlen(bag[i].name));
    if (size > MAX_TELEMETRY_BYTES) {
        free(genbuf);
        hil_result_err(r, HIL_ERR_BAD_ARGS, "message of %zu bytes exceeds IoT Hub's %d-byte limit; not sent (TEL-005)", size, MAX_TELEMETRY_BYTES);
        return;
    }
    if (C.state != ST_CONNECTED) {
        free(genbuf);
        hil_result_err(r, HIL_ERR_NOT_CONNECTED, "no hub connection (state %s)", state_names[C.state]);
        return;
    }
    static char topic[4096];
    if (hil_topic_telemetry(cfg_str("identity", "deviceId"), cfg_str("identity", "moduleId"), bag, n, topic, sizeof(topic)) < 0) {
        free(genbuf);
        hil_result_err(r, HIL_ERR_BAD_ARGS, "properties too long for a topic");
        return;
    }
    int slot = -1;
    if (qos == 1) {
        for (int i = 0; i < MAX_TEL_PENDING; i++)
            if (!C.tel[i].used) {
                slot = i;
                break;
            }
        if (slot < 0) {
            free(genbuf);
            hil_result_err(r, HIL_ERR_BUSY, "%d messages await their PUBACK", MAX_TEL_PENDING);
            return;
        }
    }
    int msg_id = 0;
    int rc = hil_port_mqtt_publish(topic, payload, plen, qos, &msg_id);
    free(genbuf);
    if (rc != 0) {
        hil_result_err(r, HIL_ERR_NOT_CONNECTED, "publish failed (%d)", rc);
        return;
    }
    uint64_t ref = ++C.tel_ref;
    bool wait = cJSON_IsTrue(ARG("wait"));
    if (qos == 1) {
        tel_pending *p = &C.tel[slot];
        p->used = true;
        p->msg_id = msg_id;
        p->ref = ref;
        p->size = (int)size;
        p->req = wait ? id : 0;
        p->deadline = hil_port_uptime_ms() + TELEMETRY_ACK_TIMEOUT_MS;
        if (wait) {
            r->kind = HIL_RES_DEFERRED;
            return;
        }
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "ref", (double)ref);
    cJSON_AddFalseToObject(d, "acked");
    cJSON_AddNumberToObject(d, "size", (double)size);
    ok(r, d);
}

static void op_twin_get(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)args;
    if (C.state != ST_CONNECTED) {
        hil_result_err(r, HIL_ERR_NOT_CONNECTED, "no hub connection");
        return;
    }
    if (!twin_publish(TW_GET, id, NULL, NULL)) {
        hil_result_err(r, HIL_ERR_BUSY, "too many twin requests outstanding");
        return;
    }
    r->kind = HIL_RES_DEFERRED;
}

#define MAX_KEY_BYTES 64
#define MAX_DEPTH 5
#define MAX_STRING_BYTES 512
#define MAX_SAFE_INT 4503599627370495.0
#define MIN_SAFE_INT -4503599627370496.0

/* Local checks of a reported patch (TWIN-011..014, TWIN-016), as the hub's
 * rules in rig/iothub/twin: a patch breaking them never leaves the device. */
bool hil_twin_validate_reported(const cJSON *obj, int level, char *why, size_t cap)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, obj)
    {
        const char *k = e->string ? e->string : "";
        size_t kl = strlen(k);
        if (k[0] == '$') {
            snprintf(why, cap, "key %.64s starts with '$' (TWIN-016)", k);
            return false;
        }
        if (kl > MAX_KEY_BYTES) {
            snprintf(why, cap, "key of %zu bytes, limit %d (TWIN-011)", kl, MAX_KEY_BYTES);
            return false;
        }
        for (size_t i = 0; i < kl; i++) {
            unsigned char c = (unsigned char)k[i];
            bool c1 = c == 0xc2 && i + 1 < kl && (unsigned char)k[i + 1] >= 0x80 && (unsigned char)k[i + 1] <= 0x9f;
            if (c < 0x20 || c1 || c == '.' || c == '$' || c == ' ' || c == ',') {
                snprintf(why, cap, "key %.64s contains a forbidden character (TWIN-011)", k);
                return false;
            }
        }
        if (cJSON_IsString(e) && strlen(e->valuestring) > MAX_STRING_BYTES) {
            snprintf(why, cap, "string of %zu bytes at %.64s, limit %d (TWIN-014)", strlen(e->valuestring), k, MAX_STRING_BYTES);
            return false;
        }
        if (cJSON_IsArray(e)) {
            snprintf(why, cap, "arrays are not allowed in reported properties (%.64s, TWIN-012)", k);
            return false;
        }
        if (cJSON_IsNumber(e)) {
            double d = e->valuedouble;
            if (d == (double)(int64_t)d && (d > MAX_SAFE_INT || d < MIN_SAFE_INT)) {
                snprintf(why, cap, "integer at %.64s outside -2^52..2^52-1 (TWIN-012)", k);
                return false;
            }
        }
        if (cJSON_IsObject(e)) {
            if (level + 1 > MAX_DEPTH) {
                snprintf(why, cap, "object at nesting level %d, limit %d (TWIN-013)", level + 1, MAX_DEPTH);
                return false;
            }
            if (!hil_twin_validate_reported(e, level + 1, why, cap)) return false;
        }
    }
    return true;
}

static void op_twin_report(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx;
    const cJSON *patch = ARG("patch");
    if (!cJSON_IsObject(patch)) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "twin.report needs a patch object");
        return;
    }
    /* spread: generated string members (agentproto.Spread), for a patch
     * larger than one frame (TWIN-015's 8 KB). */
    cJSON *full = cJSON_Duplicate(patch, 1);
    const cJSON *sp = ARG("spread");
    if (cJSON_IsObject(sp)) {
        int members = obj_int(sp, "members"), slen = obj_int(sp, "len"), extra = obj_int(sp, "extra");
        const char *prefix = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(sp, "prefix"));
        if (members < 0 || members > 1000 || slen < 0 || slen > 512) {
            cJSON_Delete(full);
            hil_result_err(r, HIL_ERR_BAD_ARGS, "spread of %d members of %d bytes outside 0..1000 x 0..512", members, slen);
            return;
        }
        char val[514], key[96];
        for (int i = 0; i < members; i++) {
            int n = slen + (i < extra ? 1 : 0);
            hil_generate(val, (size_t)n, (uint32_t)(i + 1));
            val[n] = 0;
            snprintf(key, sizeof(key), "%s%03d", prefix ? prefix : "", i % 1000);
            cJSON_DeleteItemFromObjectCaseSensitive(full, key);
            cJSON_AddStringToObject(full, key, val);
        }
    }
    char why[160];
    if (!hil_twin_validate_reported(full, 0, why, sizeof(why))) {
        cJSON_Delete(full);
        hil_result_err(r, HIL_ERR_BAD_ARGS, "reported patch not sent: %s", why);
        return;
    }
    if (C.state != ST_CONNECTED) {
        cJSON_Delete(full);
        hil_result_err(r, HIL_ERR_NOT_CONNECTED, "no hub connection");
        return;
    }
    char *body = cJSON_PrintUnformatted(full);
    cJSON_Delete(full);
    bool sent = body && twin_publish(TW_REPORT, id, body, NULL);
    hil_mem_free(body);
    if (!sent) {
        hil_result_err(r, HIL_ERR_BUSY, "twin request not sent");
        return;
    }
    r->kind = HIL_RES_DEFERRED;
}

static void op_method_define(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id;
    const char *name = cJSON_GetStringValue(ARG("name"));
    if (!name || !*name) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "method.define needs a name (or \"*\")");
        return;
    }
    const char *pl = cJSON_GetStringValue(ARG("payload"));
    if (pl && *pl) {
        cJSON *j = cJSON_Parse(pl);
        bool valid = j != NULL;
        cJSON_Delete(j);
        if (!valid) {
            hil_result_err(r, HIL_ERR_BAD_ARGS, "method payload must be JSON text");
            return;
        }
    }
    cJSON *methods = nvs_json("methods");
    if (!cJSON_IsObject(methods)) {
        cJSON_Delete(methods);
        methods = cJSON_CreateObject();
    }
    cJSON *copy = cJSON_Duplicate(args, 1);
    if (cJSON_GetObjectItemCaseSensitive(methods, name)) cJSON_ReplaceItemInObjectCaseSensitive(methods, name, copy);
    else cJSON_AddItemToObject(methods, name, copy);
    char *s = cJSON_PrintUnformatted(methods);
    int rc = s ? hil_port_nvs_set("methods", s, strlen(s)) : -1;
    hil_mem_free(s);
    cJSON_Delete(methods);
    if (rc) {
        hil_result_err(r, HIL_ERR_INTERNAL, "NVS full");
        return;
    }
    ok(r, NULL);
}

static void op_method_clear(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id, (void)args;
    hil_port_nvs_erase("methods");
    ok(r, NULL);
}

static void op_rotate(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id;
    const char *key = cJSON_GetStringValue(ARG("key"));
    const char *pem = cJSON_GetStringValue(ARG("pem"));
    const char *kpem = cJSON_GetStringValue(ARG("keyPem"));
    const char *kind;
    if (key && *key) {
        if (!valid_b64(key)) {
            hil_result_err(r, HIL_ERR_BAD_ARGS, "creds.rotate key must be base64");
            return;
        }
        cJSON *auth = section("auth");
        if (!auth || strcmp(cfg_str("auth", "type"), "sas")) {
            hil_result_err(r, HIL_ERR_BAD_ARGS, "creds.rotate key needs auth type sas");
            return;
        }
        if (cJSON_GetObjectItemCaseSensitive(auth, "key")) cJSON_ReplaceItemInObjectCaseSensitive(auth, "key", cJSON_CreateString(key));
        else cJSON_AddStringToObject(auth, "key", key);
        save_config();
        kind = "key-rotated";
    } else if (pem && *pem && kpem && *kpem) {
        if (!strstr(pem, "-----BEGIN CERTIFICATE-----") || !strstr(kpem, "PRIVATE KEY-----")) {
            hil_result_err(r, HIL_ERR_BAD_ARGS, "creds.rotate certificate: not PEM");
            return;
        }
        if (hil_port_nvs_set("cert", pem, strlen(pem)) || hil_port_nvs_set("key", kpem, strlen(kpem))) {
            hil_result_err(r, HIL_ERR_INTERNAL, "NVS full");
            return;
        }
        kind = "cert-rotated";
    } else {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "creds.rotate needs key, or pem and keyPem");
        return;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "kind", kind);
    hil_agent_event(&C.agent, "creds.renewed", d);
    if (C.session) {
        char why[64];
        snprintf(why, sizeof(why), "credentials rotated (%s)", kind);
        if (C.state == ST_STOPPED || !C.mqtt_up) {
            C.attempt = 0;
            if (C.state != ST_BACKOFF) start_attempt();
        } else {
            reconnect_now(why);
        }
    } else if (C.state == ST_STOPPED) {
        /* The loop had stopped (e.g. not authorized): new credentials are a new chance. */
        C.session = true;
        C.attempt = 0;
        start_attempt();
    }
    ok(r, NULL);
}

static cJSON *clock_json(void)
{
    bool synced = false;
    int64_t ms = hil_port_rtc_ms(&synced);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "unixMs", (double)ms);
    if (synced) cJSON_AddTrueToObject(d, "synced");
    return d;
}

static void op_clock_get(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id, (void)args;
    ok(r, clock_json());
}

static void op_clock_set(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id;
    const cJSON *ms = ARG("unixMs");
    if (!cJSON_IsNumber(ms)) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "clock.set needs unixMs");
        return;
    }
    hil_port_rtc_set((int64_t)ms->valuedouble, true);
    if (C.session && C.state == ST_BACKOFF && !C.mqtt_up && !C.sntp_pending) C.next_attempt = hil_port_uptime_ms();
    ok(r, clock_json());
}

static void op_reset(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx, (void)id, (void)args;
    C.reset_pending = true;
    ok(r, NULL);
}

static const hil_op ops[] = {
    {"hello", op_hello},
    {"echo", op_echo},
    {"configure", op_configure},
    {"status", op_status},
    {"trust.clear", op_trust_clear},
    {"trust.add", op_trust_add},
    {"trust.list", op_trust_list},
    {"cert.set", op_cert_set},
    {"client.open", op_open},
    {"client.close", op_close},
    {"telemetry.send", op_telemetry},
    {"twin.get", op_twin_get},
    {"twin.report", op_twin_report},
    {"method.define", op_method_define},
    {"method.clear", op_method_clear},
    {"creds.rotate", op_rotate},
    {"clock.get", op_clock_get},
    {"clock.set", op_clock_set},
    {"reset", op_reset},
};

static void after_response(void *ctx, uint32_t id, const char *op)
{
    (void)ctx, (void)id;
    if (strcmp(op, "reset") == 0 && C.reset_pending) {
        end_connection(false);
        hil_port_reboot();
    }
}

/* ---------------------------------------------------------------- entry points */
void hil_core_boot(void)
{
    hil_mem_install();
    memset(&C, 0, sizeof(C));
    hil_agent_init(&C.agent, ops, sizeof(ops) / sizeof(ops[0]), NULL, FW_NAME);
    C.agent.after_response = after_response;
    C.swap_connects = -1;
    C.cfg = nvs_json("config");
    if (!cJSON_IsObject(C.cfg)) {
        cJSON_Delete(C.cfg);
        C.cfg = cJSON_CreateObject();
    }
    hil_agent_log(&C.agent, 'I', "boot %d: %s %s on board %s", hil_port_boot_count(), FW_NAME, FW_VERSION, hil_port_board());
    hil_agent_event(&C.agent, "hello", hello_json());
    if (section("wifi")) hil_port_wifi_start(cfg_str("wifi", "ssid"), cfg_str("wifi", "password"));
}

void hil_core_uart_input(const char *buf, size_t n) { hil_agent_feed(&C.agent, buf, n); }

uint32_t hil_core_tick_due_ms(uint32_t max_ms)
{
    /* Timers that a hub can observe to the millisecond (a reconnect
     * attempt's start, RECON-001 jitter; a delayed method answer) get
     * their own wake-up, so a fixed idle tick does not quantise them. */
    uint64_t now = hil_port_uptime_ms(), due = now + max_ms;
    if (C.session && C.state == ST_BACKOFF && !C.mqtt_up && C.next_attempt < due) due = C.next_attempt;
    for (int i = 0; i < MAX_METHOD_PENDING; i++)
        if (C.meth[i].used && C.meth[i].due < due) due = C.meth[i].due;
    return due <= now ? 0 : (uint32_t)(due - now);
}

void hil_core_tick(void)
{
    uint64_t now = hil_port_uptime_ms();
    if (C.session && C.state == ST_BACKOFF && !C.mqtt_up && now >= C.next_attempt) start_attempt();
    if (C.session && C.state == ST_CONNECTED && C.renew_at_ms) {
        bool synced;
        if (hil_port_rtc_ms(&synced) >= C.renew_at_ms) { /* RECON-006 */
            C.pending_creds = "sas-renewal";
            reconnect_now("SAS token renewal");
        }
    }
    for (int i = 0; i < MAX_TWIN_PENDING; i++) {
        twin_pending *t = &C.twin[i];
        if (!t->used) continue;
        if (t->resend_at) {
            if (now < t->resend_at) continue;
            if (C.state == ST_CONNECTED && twin_send(t)) continue;
            if (t->req) hil_agent_fail(&C.agent, t->req, HIL_ERR_NOT_CONNECTED, "no hub connection for the retry of a twin request");
            twin_free(t);
            continue;
        }
        if (now < t->deadline) continue;
        /* no answer in time (TWIN-019); the resync tries again */
        if (t->kind == TW_RESYNC && t->tries < RESYNC_ATTEMPTS) {
            t->resend_at = now + retry_delay(t->tries);
            continue;
        }
        if (t->req) hil_agent_fail(&C.agent, t->req, HIL_ERR_TIMEOUT, "no twin response for $rid=%s", t->rid);
        else hil_agent_log(&C.agent, 'W', "no twin resync response for $rid=%s", t->rid);
        twin_free(t);
    }
    for (int i = 0; i < MAX_TEL_PENDING; i++) {
        tel_pending *p = &C.tel[i];
        if (!p->used || now < p->deadline) continue;
        p->used = false;
        if (p->req) hil_agent_fail(&C.agent, p->req, HIL_ERR_TIMEOUT, "no PUBACK for message %llu", (unsigned long long)p->ref);
    }
    for (int i = 0; i < MAX_METHOD_PENDING; i++) {
        method_pending *m = &C.meth[i];
        if (!m->used || now < m->due) continue;
        method_send(m->status, m->rid, m->name, m->size, m->payload ? m->payload : "");
        hil_mem_free(m->payload);
        memset(m, 0, sizeof(*m));
    }
}
