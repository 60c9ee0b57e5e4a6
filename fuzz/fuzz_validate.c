
/*
 * Fuzz target: the checks of client text.  The input's first byte picks
 * the check, the rest is the string (as cJSON hands it over: up to a NUL).
 * Each answer is held against an independent reading of the same rule.
 */


#include <time.h>

#include "harness.h"
#include "ngx_http_chathistory_validate.h"


static void fuzz_lang_tag(ngx_pool_t *pool, const char *s);
static void fuzz_text(const char *s, size_t max);
static void fuzz_rfc3339(const char *s);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char        *s;
    ngx_pool_t  *pool;

    if (size < 1) {
        return 0;
    }

    pool = harness_pool();

    s = ngx_pnalloc(pool, size);
    harness_check(s != NULL);
    ngx_memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';

    switch (data[0] % 3) {

    case 0:
        fuzz_lang_tag(pool, s);
        break;

    case 1:
        fuzz_text(s, data[0] < 128 ? 16 : NGX_HTTP_CHATHISTORY_TITLE_MAX);
        break;

    default:
        fuzz_rfc3339(s);
    }

    ngx_destroy_pool(pool);

    return 0;
}


/* A tag is letters, digits and hyphens; its case changes, nothing else. */
static void
fuzz_lang_tag(ngx_pool_t *pool, const char *s)
{
    char    *tag, *again;
    size_t   i, len;

    if (ngx_http_chathistory_lang_tag(pool, s, &tag) != NGX_OK) {
        return;
    }

    len = ngx_strlen(s);
    harness_check(ngx_strlen(tag) == len);
    harness_check(len <= NGX_HTTP_CHATHISTORY_LANG_MAX);
    harness_check(ngx_strncasecmp((u_char *) tag, (u_char *) s, len) == 0);

    for (i = 0; i < len; i++) {
        harness_check(isalnum((u_char) tag[i]) || tag[i] == '-');
    }

    harness_check(tag[0] != '-' && tag[len - 1] != '-');

    /* the conventional case is a fixed point */
    harness_check(ngx_http_chathistory_lang_tag(pool, tag, &again) == NGX_OK);
    harness_check(ngx_strcmp(again, tag) == 0);
}


/* What is accepted as text, PostgreSQL must take as UTF-8. */
static void
fuzz_text(const char *s, size_t max)
{
    size_t     len;
    ngx_int_t  rc;

    len = ngx_strlen(s);
    rc = ngx_http_chathistory_text_valid(s, max);

    if (len > max) {
        harness_check(rc == NGX_DECLINED);
        return;
    }

    harness_check(rc == harness_utf8((u_char *) s, len));
}


/* The same instant by the C library's calendar. */
static void
fuzz_rfc3339(const char *s)
{
    int         n, y, mo, d, h, mi, sec, oh, om, digits;
    char        sep, zone;
    int64_t     micros, expect, frac, scale;
    struct tm   tm;
    const char  *p;

    if (ngx_http_chathistory_rfc3339(s, &micros) != NULL) {
        return;
    }

    harness_check(sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3);
    harness_check(n == 10);

    h = mi = sec = oh = om = 0;
    frac = 0;
    p = s + 10;

    if (*p != '\0') {
        harness_check(sscanf(p, "%c%2d:%2d:%2d%n", &sep, &h, &mi, &sec, &n)
                      == 4);
        p += n;

        if (*p == '.') {
            scale = 100000;

            for (p++, digits = 0; *p >= '0' && *p <= '9'; p++, digits++) {
                if (digits < 6) {
                    frac += (*p - '0') * scale;
                    scale /= 10;
                }
            }
        }

        zone = *p;

        if (zone == '+' || zone == '-') {
            harness_check(sscanf(p + 1, "%2d:%2d", &oh, &om) == 2);

            if (zone == '-') {
                oh = -oh;
                om = -om;
            }
        }
    }

    ngx_memzero(&tm, sizeof(struct tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;

    /* a valid date stays the same day once normalised */
    expect = (int64_t) timegm(&tm);
    harness_check((tm.tm_mday == d && tm.tm_mon == mo - 1)
                  || (sec == 60 && h == 23 && mi == 59));

    expect = (expect - oh * 3600 - om * 60) * 1000000 + frac;

    harness_check(micros == expect);
}
