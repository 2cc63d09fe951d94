/* hil_iothub: IoT Hub device-facing wire conventions in portable C11 (the
 * same rules as rig/iothub in Go, held to the same golden vectors) and the
 * device client built on them (hil_client.c). */
#ifndef HIL_IOTHUB_H
#define HIL_IOTHUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HIL_API_VERSION "2021-04-12"

/* ---- percent-encoding ---- */
/* Go's url.QueryEscape: unreserved bytes kept, ' ' -> '+', the rest %XX. */
int hil_query_escape(const char *s, char *out, size_t cap);
/* Property-bag escaping: unreserved bytes kept, everything else %XX (a
 * space is %20). */
int hil_bag_escape(const char *s, char *out, size_t cap);
/* Go's url.QueryUnescape ('+' -> ' '); -1 on an invalid escape. */
int hil_query_unescape(const char *s, size_t n, char *out, size_t cap);

/* ---- property bags (TEL-002, C2D-002) ---- */
typedef struct {
    const char *name;
    const char *value;
    bool novalue;
} hil_prop;

/* Encode n properties; returns the length or -1 when cap is too small. */
int hil_bag_encode(const hil_prop *p, size_t n, char *out, size_t cap);
/* Parse bag text; names and values are decoded into store. Returns the
 * number of properties, or -1 on a malformed bag or lack of room. */
int hil_bag_parse(const char *text, size_t len, char *store, size_t store_cap, hil_prop *props, size_t max);

/* ---- Username (CONN-006, MOD-002, PNP-001) ---- */
int hil_username(const char *host, const char *device_id, const char *module_id, const char *api_version,
                 const char *client_type, const char *model_id, char *out, size_t cap);

/* ---- topics ---- */
int hil_topic_telemetry(const char *device_id, const char *module_id, const hil_prop *bag, size_t n, char *out, size_t cap);
int hil_topic_c2d_filter(const char *device_id, char *out, size_t cap);
int hil_topic_twin_get(const char *rid, char *out, size_t cap);
int hil_topic_twin_reported(const char *rid, char *out, size_t cap);
int hil_topic_method_response(int status, const char *rid, char *out, size_t cap);

#define HIL_FILTER_TWIN_RES "$iothub/twin/res/#"
#define HIL_FILTER_TWIN_DESIRED "$iothub/twin/PATCH/properties/desired/#"
#define HIL_FILTER_METHODS "$iothub/methods/POST/#"

typedef enum {
    HIL_TOPIC_UNKNOWN = 0,
    HIL_TOPIC_TELEMETRY,
    HIL_TOPIC_C2D,
    HIL_TOPIC_TWIN_GET,
    HIL_TOPIC_TWIN_REPORTED,
    HIL_TOPIC_TWIN_RESPONSE,
    HIL_TOPIC_TWIN_DESIRED,
    HIL_TOPIC_METHOD_REQUEST,
    HIL_TOPIC_METHOD_RESPONSE,
} hil_topic_kind;

const char *hil_topic_kind_name(hil_topic_kind k);

typedef struct {
    hil_topic_kind kind;
    const char *rid; /* verbatim, points into the topic; rid_len bytes */
    size_t rid_len;
    bool has_rid;
    int status;
    int64_t version;
    bool has_version;
    const char *method; /* points into the topic */
    size_t method_len;
    const char *bag; /* property-bag text of telemetry/C2D topics */
    size_t bag_len;
} hil_topic;

/* Returns 0, or -1 with t->kind set as far as recognised. */
int hil_topic_parse(const char *topic, hil_topic *t);

/* ---- SAS (CONN-007..010) ---- */
/* "SharedAccessSignature sr=..&sig=..&se=.." for resource_uri (decoded),
 * signed with the base64 key, expiring at se. Returns the length or -1 (bad
 * key, no room). */
int hil_sas_token(const char *resource_uri, const char *key_b64, int64_t se, char *out, size_t cap);
/* Base64 HMAC-SHA256 of msg under the base64 key; -1 on a bad key. */
int hil_sas_sign(const char *key_b64, const char *msg, size_t msg_len, char *out, size_t cap);
/* "{host}/devices/{d}[/modules/{m}]" */
int hil_resource_uri(const char *host, const char *device_id, const char *module_id, char *out, size_t cap);
/* When to renew a token of ttl_s seconds expiring at se: when
 * (1 - fraction) of the lifetime is left. Unix ms. */
int64_t hil_sas_renew_at_ms(int64_t se, int ttl_s, double fraction);

/* ---- reconnect backoff (RECON-001) ---- */
/* Delay before attempt n (1-based): initial doubled per attempt, capped at
 * max_ms, minus up to jitter_pct percent chosen by rnd. At least 1 ms. */
uint32_t hil_backoff_ms(uint32_t initial_ms, uint32_t max_ms, uint32_t jitter_pct, int attempt, uint32_t rnd);

/* ---- twin $version ordering (TWIN-009, TWIN-010) ---- */
/* A desired patch applies only when newer than the held version. */
bool hil_twin_patch_applies(int64_t held, int64_t incoming);
/* A full GET document replaces the held desired state when not older. */
bool hil_twin_get_applies(int64_t held, int64_t incoming);

/* ---- reported-patch rules (TWIN-011..014, TWIN-016) ---- */
struct cJSON;
/* True when the object at nesting level `level` (0 for a patch) obeys the
 * rules; else false with the reason in why. */
bool hil_twin_validate_reported(const struct cJSON *obj, int level, char *why, size_t cap);

/* ---- trust anchors (trust.list, CERT-001..003) ---- */
/* Upper-case hex of n bytes; -1 when cap is too small. */
int hil_hex_upper(const unsigned char *b, size_t n, char *out, size_t cap);
/* The subject of an mbedtls_x509_crt as an RFC 4514 string (Go's
 * pkix.Name.String: last RDN first, "CN=...,O=...,C=.."); -1 when it does
 * not fit. */
int hil_x509_subject(const void *crt, char *out, size_t cap);
/* Appends to arr one {subject, sha256, source} object per certificate of
 * pem (concatenated PEM blocks); sha256 is the DER fingerprint in
 * upper-case hex. With filter (a JSON array of hex strings, any case) only
 * the certificates among those fingerprints. Returns the number of blocks
 * that did not parse, or -1 when none did. */
int hil_trust_list_append(struct cJSON *arr, const char *pem, const char *source, const struct cJSON *filter);

#ifdef __cplusplus
}
#endif
#endif
