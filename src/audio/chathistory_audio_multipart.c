
/*
 * multipart/form-data (RFC 7578, RFC 2046): finds the one audio part.
 */


#include <string.h>
#include <strings.h>

#include "chathistory_audio_int.h"


#define CHA_BOUNDARY_MAX  70


typedef struct {
    const unsigned char  *type;
    size_t                type_len;
    int                   audio;
} cha_part_t;


static int cha_multipart_boundary(const char *content_type, char *boundary,
    size_t *blen);
static const unsigned char *cha_multipart_delimiter(const unsigned char *p,
    const unsigned char *end, const char *boundary, size_t blen,
    const unsigned char **next);
static int cha_multipart_headers(const unsigned char *p,
    const unsigned char *end, cha_part_t *part, const unsigned char **body);
static void cha_multipart_header(const unsigned char *p, size_t len,
    cha_part_t *part);
static int cha_multipart_filename(const unsigned char *p, size_t len);
static const unsigned char *cha_memmem(const unsigned char *p, size_t len,
    const char *s, size_t slen);


int
cha_multipart_find(const unsigned char *body, size_t len,
    const char *content_type, const unsigned char **part, size_t *part_len,
    const char **part_type, size_t *part_type_len, char *err, size_t errlen)
{
    char                  boundary[CHA_BOUNDARY_MAX + 1];
    size_t                blen, found;
    cha_part_t            hdr;
    const unsigned char  *p, *end, *start, *delim, *next;

    if (cha_multipart_boundary(content_type, boundary, &blen) != 0) {
        cha_error(err, errlen, "bad multipart boundary");
        return -1;
    }

    end = body + len;

    /* the first delimiter starts the body or ends a preamble */
    if (len >= blen + 2 && body[0] == '-' && body[1] == '-'
        && memcmp(body + 2, boundary, blen) == 0)
    {
        p = body + 2 + blen;

    } else if (cha_multipart_delimiter(body, end, boundary, blen, &p) == NULL) {
        cha_error(err, errlen, "no multipart boundary in body");
        return -1;
    }

    found = 0;

    for ( ;; ) {

        /* p follows a delimiter: "--" closes, else padding and a line end */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
            break;
        }

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (p < end && *p == '\r') {
            p++;
        }

        if (p >= end || *p != '\n') {
            cha_error(err, errlen, "truncated multipart body");
            return -1;
        }

        if (cha_multipart_headers(p + 1, end, &hdr, &start) != 0) {
            cha_error(err, errlen, "truncated multipart headers");
            return -1;
        }

        delim = cha_multipart_delimiter(start, end, boundary, blen, &next);
        if (delim == NULL) {
            cha_error(err, errlen, "truncated multipart body");
            return -1;
        }

        if (hdr.audio) {
            if (found++ > 0) {
                cha_error(err, errlen, "several audio parts in multipart body");
                return -1;
            }

            *part = start;
            *part_len = delim - start;
            *part_type = (const char *) hdr.type;
            *part_type_len = hdr.type_len;
        }

        p = next;
    }

    if (found == 0) {
        cha_error(err, errlen, "no audio part in multipart body");
        return -1;
    }

    return 0;
}


/* Takes the boundary parameter, quoted or not, from a Content-Type value. */
static int
cha_multipart_boundary(const char *content_type, char *boundary, size_t *blen)
{
    size_t       n;
    const char  *p;

    p = content_type;

    while (*p == ' ' || *p == '\t') {
        p++;
    }

    if (strncasecmp(p, "multipart/form-data", 19) != 0) {
        return -1;
    }

    for (p += 19; *p != '\0'; /* void */) {

        while (*p == ';' || *p == ' ' || *p == '\t') {
            p++;
        }

        if (strncasecmp(p, "boundary", 8) != 0) {
            /* skip another parameter, minding quoted strings */
            while (*p != '\0' && *p != ';') {
                if (*p++ == '"') {
                    while (*p != '\0' && *p != '"') {
                        p += (*p == '\\' && p[1] != '\0') ? 2 : 1;
                    }

                    if (*p == '"') {
                        p++;
                    }
                }
            }

            continue;
        }

        p += 8;

        while (*p == ' ' || *p == '\t') {
            p++;
        }

        if (*p++ != '=') {
            return -1;
        }

        while (*p == ' ' || *p == '\t') {
            p++;
        }

        n = 0;

        if (*p == '"') {
            for (p++; *p != '"'; p++) {
                if (*p == '\\' && p[1] != '\0') {
                    p++;
                }

                if (*p == '\0' || n == CHA_BOUNDARY_MAX) {
                    return -1;
                }

                boundary[n++] = *p;
            }

        } else {
            for ( /* void */ ; *p != '\0' && *p != ';' && *p != ' '
                               && *p != '\t'; p++)
            {
                if (n == CHA_BOUNDARY_MAX) {
                    return -1;
                }

                boundary[n++] = *p;
            }
        }

        if (n == 0) {
            return -1;
        }

        boundary[n] = '\0';
        *blen = n;

        return 0;
    }

    return -1;
}


/*
 * Finds the next "--boundary" at a line start after p; returns where the part
 * before it ends (its CRLF or LF excluded) and sets *next past it.
 */
static const unsigned char *
cha_multipart_delimiter(const unsigned char *p, const unsigned char *end,
    const char *boundary, size_t blen, const unsigned char **next)
{
    const unsigned char  *q, *s;

    for (s = p; s < end; s = q + 1) {
        q = cha_memmem(s, end - s, "\n--", 3);
        if (q == NULL) {
            return NULL;
        }

        if ((size_t) (end - q - 3) >= blen
            && memcmp(q + 3, boundary, blen) == 0)
        {
            *next = q + 3 + blen;
            return (q > p && q[-1] == '\r') ? q - 1 : q;
        }
    }

    return NULL;
}


/* Reads the part's header lines up to the empty one. */
static int
cha_multipart_headers(const unsigned char *p, const unsigned char *end,
    cha_part_t *part, const unsigned char **body)
{
    size_t                len;
    const unsigned char  *eol;

    memset(part, 0, sizeof(cha_part_t));

    for ( ;; ) {
        eol = memchr(p, '\n', end - p);
        if (eol == NULL) {
            return -1;
        }

        len = eol - p;

        if (len > 0 && p[len - 1] == '\r') {
            len--;
        }

        if (len == 0) {
            *body = eol + 1;
            return 0;
        }

        cha_multipart_header(p, len, part);
        p = eol + 1;
    }
}


static void
cha_multipart_header(const unsigned char *p, size_t len, cha_part_t *part)
{
    size_t                n;
    const unsigned char  *v, *end;

    end = p + len;

    v = memchr(p, ':', len);
    if (v == NULL) {
        return;
    }

    n = v - p;

    for (v++; v < end && (*v == ' ' || *v == '\t'); v++) { /* void */ }

    if (n == 12 && strncasecmp((const char *) p, "content-type", 12) == 0) {
        part->type = v;

        for (n = 0; v + n < end && v[n] != ';' && v[n] != ' '
                    && v[n] != '\t'; n++)
        { /* void */ }

        part->type_len = n;

        if ((n > 6 && strncasecmp((const char *) v, "audio/", 6) == 0)
            || (n == 15 && strncasecmp((const char *) v, "application/ogg",
                                       15) == 0))
        {
            part->audio = 1;
        }

    } else if (n == 19
               && strncasecmp((const char *) p, "content-disposition", 19) == 0
               && cha_multipart_filename(v, end - v))
    {
        part->audio = 1;
    }
}


/* Whether a Content-Disposition names a .wav, .ogg or .opus file. */
static int
cha_multipart_filename(const unsigned char *p, size_t len)
{
    size_t                n;
    const unsigned char  *q, *end, *name;

    end = p + len;

    for (q = p; (q = cha_memmem(q, end - q, "filename", 8)) != NULL; q += 8) {

        if (q > p && q[-1] != ';' && q[-1] != ' ' && q[-1] != '\t') {
            continue;
        }

        name = q + 8;

        if (name < end && *name == '*') {
            name++;     /* filename*=utf-8''x.wav: the end is what matters */
        }

        while (name < end && (*name == ' ' || *name == '\t')) {
            name++;
        }

        if (name >= end || *name++ != '=') {
            continue;
        }

        while (name < end && (*name == ' ' || *name == '\t')) {
            name++;
        }

        n = 0;

        if (name < end && *name == '"') {
            for (name++; name + n < end && name[n] != '"'; n++) { /* void */ }

        } else {
            for ( /* void */ ; name + n < end && name[n] != ';'
                               && name[n] != ' '; n++)
            { /* void */ }
        }

        if ((n >= 4 && strncasecmp((const char *) name + n - 4, ".wav", 4) == 0)
            || (n >= 4
                && strncasecmp((const char *) name + n - 4, ".ogg", 4) == 0)
            || (n >= 5
                && strncasecmp((const char *) name + n - 5, ".opus", 5) == 0))
        {
            return 1;
        }
    }

    return 0;
}


static const unsigned char *
cha_memmem(const unsigned char *p, size_t len, const char *s, size_t slen)
{
    const unsigned char  *q, *end;

    if (len < slen) {
        return NULL;
    }

    end = p + len - slen + 1;

    for ( /* void */ ; p < end; p = q + 1) {
        q = memchr(p, s[0], end - p);
        if (q == NULL) {
            return NULL;
        }

        if (memcmp(q, s, slen) == 0) {
            return q;
        }
    }

    return NULL;
}
