
/*
 * Validation of client input.
 */


#include "ngx_http_chathistory_validate.h"


static ngx_uint_t ngx_http_chathistory_subtag_ok(u_char *tag, size_t len,
    ngx_uint_t index, ngx_uint_t *singleton);
static void ngx_http_chathistory_subtag_case(u_char *tag, size_t len,
    ngx_uint_t index, ngx_uint_t singleton);
static ngx_uint_t ngx_http_chathistory_all(u_char *s, size_t len,
    int (*is)(int));


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


/* Text that PostgreSQL will take: valid UTF-8, within a length. */
ngx_int_t
ngx_http_chathistory_text_valid(const char *s, size_t max)
{
    u_char  *p, *last;
    size_t   len;

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

        if (ngx_utf8_decode(&p, last - p) > 0x10ffff) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
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
