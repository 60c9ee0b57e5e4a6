
/*
 * Validation of client input.
 */


#include "ngx_http_chathistory_validate.h"


#define CH_NOT_RFC3339                                                        \
    "is not an RFC 3339 time such as \"2026-01-31T12:00:00Z\""


static ngx_uint_t ngx_http_chathistory_subtag_ok(u_char *tag, size_t len,
    ngx_uint_t index, ngx_uint_t *singleton);
static void ngx_http_chathistory_subtag_case(u_char *tag, size_t len,
    ngx_uint_t index, ngx_uint_t singleton);
static ngx_uint_t ngx_http_chathistory_all(u_char *s, size_t len,
    int (*is)(int));
static size_t ngx_http_chathistory_utf8_len(u_char *p, u_char *last);
static ngx_int_t ngx_http_chathistory_digits(const char **p, ngx_uint_t n,
    ngx_int_t *value);
static int64_t ngx_http_chathistory_days(ngx_int_t y, ngx_int_t m,
    ngx_int_t d);


/*
 * A BCP 47 language tag ("en", "pt-BR", "zh-Hant-TW", "sl-rozaj",
 * "de-CH-x-phonebk"), returned in its conventional case.
 */
ngx_int_t
ngx_http_chathistory_lang_tag(ngx_pool_t *pool, const char *in, char **out)
{
    u_char      *tag, *p, *start;
    size_t       len;
    ngx_uint_t   index, singleton;

    len = ngx_strlen(in);

    if (len == 0 || len > NGX_HTTP_CHATHISTORY_LANG_MAX) {
        return NGX_DECLINED;
    }

    tag = ngx_pnalloc(pool, len + 1);
    if (tag == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(tag, in, len + 1);

    index = 0;
    singleton = 0;
    start = tag;

    for (p = tag; ; p++) {
        if (*p != '-' && *p != '\0') {
            continue;
        }

        if (!ngx_http_chathistory_subtag_ok(start, p - start, index,
                                            &singleton))
        {
            return NGX_DECLINED;
        }

        ngx_http_chathistory_subtag_case(start, p - start, index, singleton);

        if (*p == '\0') {
            break;
        }

        start = p + 1;
        index++;
    }

    /* an extension or private use singleton needs a subtag after it */
    if (singleton && start[1] == '\0' && start != tag) {
        return NGX_DECLINED;
    }

    *out = (char *) tag;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_chathistory_subtag_ok(u_char *tag, size_t len, ngx_uint_t index,
    ngx_uint_t *singleton)
{
    if (len == 0 || len > 8 || !ngx_http_chathistory_all(tag, len, isalnum)) {
        return 0;
    }

    if (index == 0) {
        /* primary language: 2-3 letters, or 5-8 registered ones */
        return (len >= 2 && len != 4)
               && ngx_http_chathistory_all(tag, len, isalpha);
    }

    if (len == 1) {
        *singleton = 1;
        return 1;
    }

    if (*singleton) {
        return 1;
    }

    switch (len) {
    case 2:  /* region */
        return ngx_http_chathistory_all(tag, len, isalpha);
    case 3:  /* extlang or UN M.49 region */
        return ngx_http_chathistory_all(tag, len, isalpha)
               || ngx_http_chathistory_all(tag, len, isdigit);
    case 4:  /* script, or a variant starting with a digit */
        return ngx_http_chathistory_all(tag, len, isalpha)
               || isdigit(tag[0]);
    default: /* variant */
        return 1;
    }
}


static void
ngx_http_chathistory_subtag_case(u_char *tag, size_t len, ngx_uint_t index,
    ngx_uint_t singleton)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        tag[i] = (u_char) ngx_tolower(tag[i]);
    }

    if (index == 0 || singleton) {
        return;
    }

    if (len == 2) {
        tag[0] = (u_char) ngx_toupper(tag[0]);
        tag[1] = (u_char) ngx_toupper(tag[1]);

    } else if (len == 4 && isalpha(tag[0])) {
        tag[0] = (u_char) ngx_toupper(tag[0]);
    }
}


static ngx_uint_t
ngx_http_chathistory_all(u_char *s, size_t len, int (*is)(int))
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!is(s[i])) {
            return 0;
        }
    }

    return 1;
}


/*
 * Text that PostgreSQL will take: valid UTF-8, within a length.  Not
 * ngx_utf8_decode(): it takes any byte above 0x7f as a continuation and
 * lets surrogates through, and PostgreSQL refuses both.
 */
ngx_int_t
ngx_http_chathistory_text_valid(const char *s, size_t max)
{
    u_char  *p, *last;
    size_t   len, n;

    len = ngx_strlen(s);

    if (len > max) {
        return NGX_DECLINED;
    }

    p = (u_char *) s;
    last = p + len;

    while (p < last) {
        if (*p < 0x80) {
            p++;
            continue;
        }

        n = ngx_http_chathistory_utf8_len(p, last);
        if (n == 0) {
            return NGX_DECLINED;
        }

        p += n;
    }

    return NGX_OK;
}


/*
 * An end user's id: 1 to max characters of UTF-8, none of them a control
 * character (C0, DEL, C1), which would only hide in logs and screens.
 */
ngx_int_t
ngx_http_chathistory_user_id_valid(u_char *p, size_t len, size_t max)
{
    u_char  *last;
    size_t   n, chars;

    last = p + len;

    for (chars = 0; p < last; chars++) {
        if (*p < 0x20 || *p == 0x7f) {
            return NGX_DECLINED;
        }

        if (*p < 0x80) {
            p++;
            continue;
        }

        n = ngx_http_chathistory_utf8_len(p, last);

        /* U+0080..U+009F are C2 80..C2 9F */
        if (n == 0 || (p[0] == 0xc2 && p[1] < 0xa0)) {
            return NGX_DECLINED;
        }

        p += n;
    }

    return (chars >= 1 && chars <= max) ? NGX_OK : NGX_DECLINED;
}


/* The length of the UTF-8 sequence at p (RFC 3629), 0 if it is not one. */
static size_t
ngx_http_chathistory_utf8_len(u_char *p, u_char *last)
{
    size_t    n, i;
    uint32_t  c, min;

    if (*p >= 0xc2 && *p <= 0xdf) {
        n = 2;
        min = 0x80;

    } else if (*p >= 0xe0 && *p <= 0xef) {
        n = 3;
        min = 0x800;

    } else if (*p >= 0xf0 && *p <= 0xf4) {
        n = 4;
        min = 0x10000;

    } else {
        return 0;
    }

    if ((size_t) (last - p) < n) {
        return 0;
    }

    c = *p & (0x7f >> n);

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        c = (c << 6) | (p[i] & 0x3f);
    }

    /* overlong forms, UTF-16 surrogates, beyond U+10FFFF */
    if (c < min || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff) {
        return 0;
    }

    return n;
}


/* A query argument, unescaped: NGX_DECLINED when absent. */
ngx_int_t
ngx_http_chathistory_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    u_char     *dst, *src;
    ngx_str_t   raw;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK) {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(r->pool, raw.len + 1);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    value->data = dst;
    src = raw.data;
    ngx_unescape_uri(&dst, &src, raw.len, NGX_UNESCAPE_URI);
    value->len = dst - value->data;
    *dst = '\0';

    return NGX_OK;
}


/* ?limit=: absent gives the default; anything but 1..max is refused. */
ngx_int_t
ngx_http_chathistory_arg_limit(ngx_http_request_t *r, ngx_uint_t dflt,
    ngx_uint_t max, ngx_uint_t *limit)
{
    ngx_int_t  n, rc;
    ngx_str_t  value;

    rc = ngx_http_chathistory_arg(r, "limit", &value);

    if (rc == NGX_DECLINED) {
        *limit = dflt;
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    n = ngx_atoi(value.data, value.len);

    if (n < 1 || (ngx_uint_t) n > max) {
        return NGX_DECLINED;
    }

    *limit = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_digits(const char **p, ngx_uint_t n, ngx_int_t *value)
{
    ngx_uint_t  i;

    *value = 0;

    for (i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9') {
            return NGX_ERROR;
        }

        *value = *value * 10 + ((*p)[i] - '0');
    }

    *p += n;

    return NGX_OK;
}


/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t
ngx_http_chathistory_days(ngx_int_t y, ngx_int_t m, ngx_int_t d)
{
    int64_t  era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


/*
 * An RFC 3339 time ("2026-01-31T12:00:00Z", "...12:00:00.250+02:00") or a
 * date ("2026-01-31", midnight UTC), as microseconds since the epoch; or
 * why it is not one that PostgreSQL takes.
 */
const char *
ngx_http_chathistory_rfc3339(const char *s, int64_t *micros)
{
    char         sign;
    int64_t      us;
    ngx_int_t    y, mo, d, h, mi, sec, oh, om, frac, scale;
    const char  *p;

    static ngx_int_t  mdays[] = { 31, 29, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31 };

    p = s;
    h = mi = sec = 0;
    us = 0;

    if (ngx_http_chathistory_digits(&p, 4, &y) != NGX_OK || *p++ != '-'
        || ngx_http_chathistory_digits(&p, 2, &mo) != NGX_OK || *p++ != '-'
        || ngx_http_chathistory_digits(&p, 2, &d) != NGX_OK
        || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1]
        || (mo == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400))))
    {
        return CH_NOT_RFC3339;
    }

    if (y == 0) {
        return "has the year 0000, and years start at 0001";
    }

    if (*p == '\0') {
        *micros = ngx_http_chathistory_days(y, mo, d) * 86400 * 1000000;
        return NULL;
    }

    if (*p != 'T' && *p != 't' && *p != ' ') {
        return CH_NOT_RFC3339;
    }

    p++;

    if (ngx_http_chathistory_digits(&p, 2, &h) != NGX_OK || *p++ != ':'
        || ngx_http_chathistory_digits(&p, 2, &mi) != NGX_OK || *p++ != ':'
        || ngx_http_chathistory_digits(&p, 2, &sec) != NGX_OK
        || h > 23 || mi > 59 || sec > 60)
    {
        return CH_NOT_RFC3339;
    }

    if (*p == '.') {
        p++;
        frac = 0;
        scale = 1000000;

        if (*p < '0' || *p > '9') {
            return CH_NOT_RFC3339;
        }

        while (*p >= '0' && *p <= '9') {
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
            p++;
        }

        us = frac;
    }

    oh = om = 0;

    if (*p == 'Z' || *p == 'z') {
        p++;

    } else if (*p == '+' || *p == '-') {
        sign = *p++;

        if (ngx_http_chathistory_digits(&p, 2, &oh) != NGX_OK || *p++ != ':'
            || ngx_http_chathistory_digits(&p, 2, &om) != NGX_OK
            || oh > 23 || om > 59)
        {
            return CH_NOT_RFC3339;
        }

        if (oh > 15) {
            return "has a UTC offset beyond 15:59";
        }

        if (sign == '-') {
            oh = -oh;
            om = -om;
        }

    } else {
        return CH_NOT_RFC3339;
    }

    if (*p != '\0') {
        return CH_NOT_RFC3339;
    }

    *micros = ((ngx_http_chathistory_days(y, mo, d) * 86400 + h * 3600
                + mi * 60 + sec - oh * 3600 - om * 60) * 1000000) + us;

    return NULL;
}
