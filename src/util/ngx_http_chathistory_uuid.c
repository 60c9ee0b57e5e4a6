
/*
 * UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a counter that
 * keeps ids from one worker ordered within a millisecond, then random bits.
 */


#include <sys/random.h>

#include "ngx_http_chathistory_uuid.h"


static void ngx_http_chathistory_uuid_random(u_char *buf, size_t len);
static void ngx_http_chathistory_uuid_format(ngx_http_chathistory_uuid_t *id,
    u_char *bytes);


void
ngx_http_chathistory_uuid_v7(ngx_http_chathistory_uuid_t *id)
{
    u_char           b[16];
    uint64_t         ms;
    ngx_time_t      *tp;

    static uint64_t  last_ms;
    static uint32_t  seq;

    ngx_http_chathistory_uuid_random(b, sizeof(b));

    tp = ngx_timeofday();
    ms = (uint64_t) tp->sec * 1000 + tp->msec;

    if (ms > last_ms) {
        last_ms = ms;
        seq = ((uint32_t) b[6] << 8 | b[7]) & 0x7ff;  /* room to count */

    } else {
        ms = last_ms;

        if (++seq > 0xfff) {
            /* 4096 ids in one millisecond: borrow the next one */
            last_ms = ++ms;
            seq = 0;
        }
    }

    b[0] = (u_char) (ms >> 40);
    b[1] = (u_char) (ms >> 32);
    b[2] = (u_char) (ms >> 24);
    b[3] = (u_char) (ms >> 16);
    b[4] = (u_char) (ms >> 8);
    b[5] = (u_char) ms;
    b[6] = (u_char) (0x70 | (seq >> 8));
    b[7] = (u_char) seq;
    b[8] = (u_char) (0x80 | (b[8] & 0x3f));

    ngx_http_chathistory_uuid_format(id, b);
}


static void
ngx_http_chathistory_uuid_random(u_char *buf, size_t len)
{
    size_t  i;

    /* the kernel's pool never blocks once the system has booted */
    if (getrandom(buf, len, GRND_NONBLOCK) == (ssize_t) len) {
        return;
    }

    for (i = 0; i < len; i++) {
        buf[i] = (u_char) ngx_random();
    }
}


static void
ngx_http_chathistory_uuid_format(ngx_http_chathistory_uuid_t *id,
    u_char *bytes)
{
    u_char      *p;
    ngx_uint_t   i;

    static u_char  hex[] = "0123456789abcdef";

    p = id->text;

    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *p++ = '-';
        }

        *p++ = hex[bytes[i] >> 4];
        *p++ = hex[bytes[i] & 0x0f];
    }

    *p = '\0';
}


/* Accept the canonical 8-4-4-4-12 form, in either case. */
ngx_int_t
ngx_http_chathistory_uuid_parse(ngx_http_chathistory_uuid_t *id, u_char *s,
    size_t len)
{
    u_char      c;
    ngx_uint_t  i;

    if (len != NGX_HTTP_CHATHISTORY_UUID_LEN) {
        return NGX_ERROR;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return NGX_ERROR;
            }

        } else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
            /* void */

        } else if (c >= 'A' && c <= 'F') {
            c = (u_char) (c | 0x20);

        } else {
            return NGX_ERROR;
        }

        id->text[i] = c;
    }

    id->text[len] = '\0';

    return NGX_OK;
}
