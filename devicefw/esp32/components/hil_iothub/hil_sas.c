/* SAS tokens (HMAC-SHA256 via mbedTLS), backoff and twin version rules. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hil_iothub.h"
#include "mbedtls/base64.h"
#include "mbedtls/md.h"

int hil_sas_sign(const char *key_b64, const char *msg, size_t msg_len, char *out, size_t cap)
{
    unsigned char key[128], mac[32];
    size_t klen = 0, olen = 0;
    if (mbedtls_base64_decode(key, sizeof(key), &klen, (const unsigned char *)key_b64, strlen(key_b64)) != 0 || klen == 0) return -1;
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    int rc = mbedtls_md_hmac(md, key, klen, (const unsigned char *)msg, msg_len, mac);
    memset(key, 0, sizeof(key));
    if (rc != 0) return -1;
    if (mbedtls_base64_encode((unsigned char *)out, cap, &olen, mac, sizeof(mac)) != 0) return -1;
    out[olen] = 0;
    return (int)olen;
}

int hil_resource_uri(const char *host, const char *device_id, const char *module_id, char *out, size_t cap)
{
    int k = module_id && *module_id ? snprintf(out, cap, "%s/devices/%s/modules/%s", host, device_id, module_id)
                                    : snprintf(out, cap, "%s/devices/%s", host, device_id);
    return k < 0 || (size_t)k >= cap ? -1 : k;
}

int hil_sas_token(const char *resource_uri, const char *key_b64, int64_t se, char *out, size_t cap)
{
    char sr[512], tosign[560], sig[64], sigq[128];
    if (se < 0) return -1;
    int n = hil_query_escape(resource_uri, sr, sizeof(sr));
    if (n < 0) return -1;
    int m = snprintf(tosign, sizeof(tosign), "%s\n%lld", sr, (long long)se);
    if (m < 0 || (size_t)m >= sizeof(tosign)) return -1;
    if (hil_sas_sign(key_b64, tosign, (size_t)m, sig, sizeof(sig)) < 0) return -1;
    if (hil_query_escape(sig, sigq, sizeof(sigq)) < 0) return -1;
    int k = snprintf(out, cap, "SharedAccessSignature sr=%s&sig=%s&se=%lld", sr, sigq, (long long)se);
    memset(sig, 0, sizeof(sig));
    memset(sigq, 0, sizeof(sigq));
    return k < 0 || (size_t)k >= cap ? -1 : k;
}

int64_t hil_sas_renew_at_ms(int64_t se, int ttl_s, double fraction)
{
    return se * 1000 - llround((1.0 - fraction) * (double)ttl_s * 1000.0);
}

uint32_t hil_backoff_ms(uint32_t initial_ms, uint32_t max_ms, uint32_t jitter_pct, int attempt, uint32_t rnd)
{
    uint64_t d = initial_ms;
    for (int i = 1; i < attempt && d < max_ms; i++) d *= 2;
    if (d > max_ms) d = max_ms;
    if (jitter_pct > 100) jitter_pct = 100;
    uint64_t span = d * jitter_pct / 100;
    d -= (span * (uint64_t)rnd) >> 32; /* [0, span) */
    return d < 1 ? 1 : (uint32_t)d;
}

bool hil_twin_patch_applies(int64_t held, int64_t incoming) { return incoming > held; }
bool hil_twin_get_applies(int64_t held, int64_t incoming) { return incoming >= held; }
