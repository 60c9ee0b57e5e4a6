
/*
 * A cursor is "v1.<micros>.<uuid>" in base64url: opaque to clients,
 * checked strictly when it comes back.
 */


#include "ngx_http_chathistory_cursor.h"


#define CH_CURSOR_PREFIX      "v1."
#define CH_CURSOR_RAW_MAX     (sizeof(CH_CURSOR_PREFIX) + NGX_INT64_LEN      \
                               + 1 + NGX_HTTP_CHATHISTORY_UUID_LEN)


ngx_int_t
ngx_http_chathistory_cursor_encode(ngx_pool_t *pool, const char *micros,
    const char *id, ngx_str_t *out)
{
    u_char     raw[CH_CURSOR_RAW_MAX + 1];
    ngx_str_t  src;

    if (ngx_strlen(micros) > NGX_INT64_LEN
        || ngx_strlen(id) != NGX_HTTP_CHATHISTORY_UUID_LEN)
    {
        return NGX_ERROR;
    }

    src.data = raw;
    src.len = ngx_sprintf(raw, CH_CURSOR_PREFIX "%s.%s", micros, id) - raw;

    out->data = ngx_pnalloc(pool, ngx_base64_encoded_length(src.len));
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64url(out, &src);

    return NGX_OK;
}


ngx_int_t
ngx_http_chathistory_cursor_decode(ngx_str_t *in,
    ngx_http_chathistory_cursor_t *cursor)
{
    u_char     raw[CH_CURSOR_RAW_MAX + 4], *p, *dot, *last;
    ngx_str_t  dst;

    if (in->len == 0 || ngx_base64_decoded_length(in->len) > CH_CURSOR_RAW_MAX)
    {
        return NGX_DECLINED;
    }

    dst.data = raw;

    if (ngx_decode_base64url(&dst, in) != NGX_OK) {
        return NGX_DECLINED;
    }

    p = raw + sizeof(CH_CURSOR_PREFIX) - 1;
    last = raw + dst.len;

    if (dst.len < sizeof(CH_CURSOR_PREFIX) - 1
        || ngx_strncmp(raw, CH_CURSOR_PREFIX, sizeof(CH_CURSOR_PREFIX) - 1))
    {
        return NGX_DECLINED;
    }

    dot = ngx_strlchr(p, last, '.');

    if (dot == NULL || dot == p || (size_t) (dot - p) > NGX_INT64_LEN - 1
        || ngx_atoof(p, dot - p) == NGX_ERROR)
    {
        return NGX_DECLINED;
    }

    ngx_memcpy(cursor->micros, p, dot - p);
    cursor->micros[dot - p] = '\0';

    return ngx_http_chathistory_uuid_parse(&cursor->id, dot + 1,
                                           last - dot - 1) == NGX_OK
           ? NGX_OK : NGX_DECLINED;
}
