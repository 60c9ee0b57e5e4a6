
/*
 * Structured log lines on stderr, one per event, in logfmt:
 * ts=2024-05-01T12:00:00.123Z level=info msg="migration applied" version=0001
 */


#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chathistory_worker.h"


static void chw_log_time(FILE *out);
static void chw_log_value(FILE *out, const char *value);
static int chw_log_needs_quotes(const char *value, size_t len);
static size_t chw_log_trimmed_len(const char *value);


static const char  *chw_log_levels[] = { "info", "warn", "error" };


void
chw_log(chw_log_level_e level, const char *msg, ...)
{
    char        *line, *key, *value;
    FILE        *out;
    size_t       len;
    va_list      args;

    line = NULL;
    len = 0;

    /* one write per line, so that concurrent processes do not interleave */
    out = open_memstream(&line, &len);
    if (out == NULL) {
        fprintf(stderr, "level=error msg=\"cannot log\" dropped=\"%s\"\n", msg);
        return;
    }

    chw_log_time(out);
    fprintf(out, " level=%s msg=", chw_log_levels[level]);
    chw_log_value(out, msg);

    va_start(args, msg);

    for ( ;; ) {
        key = va_arg(args, char *);
        if (key == NULL) {
            break;
        }

        value = va_arg(args, char *);
        if (value == NULL) {
            continue;
        }

        fprintf(out, " %s=", key);
        chw_log_value(out, value);
    }

    va_end(args);

    fputc('\n', out);

    if (fclose(out) != 0 || line == NULL) {
        free(line);
        return;
    }

    fwrite(line, 1, len, stderr);
    fflush(stderr);
    free(line);
}


static void
chw_log_time(FILE *out)
{
    char             buf[32];
    struct tm        tm;
    struct timespec  ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0
        || gmtime_r(&ts.tv_sec, &tm) == NULL)
    {
        fputs("ts=?", out);
        return;
    }

    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(out, "ts=%s.%03ldZ", buf, ts.tv_nsec / 1000000);
}


/* a value as is when it is one word, else quoted with \" \\ \n escaped */
static void
chw_log_value(FILE *out, const char *value)
{
    size_t          i, len;
    unsigned char   c;

    len = chw_log_trimmed_len(value);

    if (!chw_log_needs_quotes(value, len)) {
        fwrite(value, 1, len, out);
        return;
    }

    fputc('"', out);

    for (i = 0; i < len; i++) {
        c = (unsigned char) value[i];

        switch (c) {
        case '"':
        case '\\':
            fputc('\\', out);
            fputc(c, out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                fprintf(out, "\\x%02x", c);
            } else {
                fputc(c, out);
            }
        }
    }

    fputc('"', out);
}


static int
chw_log_needs_quotes(const char *value, size_t len)
{
    size_t          i;
    unsigned char   c;

    if (len == 0) {
        return 1;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) value[i];

        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) {
            return 1;
        }
    }

    return 0;
}


/* libpq's messages end in a newline the log line does not want */
static size_t
chw_log_trimmed_len(const char *value)
{
    size_t  len;

    len = strlen(value);

    while (len > 0 && isspace((unsigned char) value[len - 1])) {
        len--;
    }

    return len;
}
