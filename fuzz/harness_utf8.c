
/*
 * The fuzz targets' own idea of text PostgreSQL accepts, written from
 * RFC 3629 apart from the module's, so the two can disagree.
 */


#include "harness.h"


ngx_int_t
harness_utf8(const u_char *s, size_t len)
{
    size_t    i, n, k;
    uint32_t  c, min;

    for (i = 0; i < len; i += n) {
        c = s[i];

        if (c == 0) {
            return NGX_DECLINED;
        }

        if (c < 0x80) {
            n = 1;
            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
            min = 0x80;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            min = 0x800;

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            min = 0x10000;

        } else {
            return NGX_DECLINED;
        }

        c &= 0x7f >> n;

        if (len - i < n) {
            return NGX_DECLINED;
        }

        for (k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return NGX_DECLINED;
            }

            c = (c << 6) | (s[i + k] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}
