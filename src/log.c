/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "aigw/log.h"
#include "aigw/macro.h"

#define MAX_FIELDS 24
#define MAX_MESSAGE 2048

static atomic_int log_level = LOG_INFO;
static bool to_journal;

bool log_stream_is_journal(const char *journal_stream, int fd) {
    if (!journal_stream)
        return false;
    unsigned long long dev, ino;
    char extra;
    if (sscanf(journal_stream, "%llu:%llu%c", &dev, &ino, &extra) != 2)
        return false;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(void) {
    /* sd_journal_send cannot tell whether anything arrives, so only use it
     * when systemd connected our stderr to the journal. */
    to_journal = log_stream_is_journal(getenv("JOURNAL_STREAM"), STDERR_FILENO);
}

void log_set_level(int level) {
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

int log_get_level(void) {
    return atomic_load_explicit(&log_level, memory_order_relaxed);
}

bool log_is_journal(void) {
    return to_journal;
}

bool log_field_name_valid(const char *name) {
    /* journald's rules: A-Z, 0-9, _; not starting with _ or a digit; ≤ 64 */
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '_' || (name[0] >= '0' && name[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

struct out {
    char *buf;
    size_t size, len;
};

static void out_char(struct out *o, char c) {
    /* keep 1 byte for the final newline */
    if (o->len + 1 < o->size)
        o->buf[o->len++] = c;
}

static void out_str(struct out *o, const char *s) {
    for (; *s; s++)
        out_char(o, *s);
}

/* One entry must stay one line: control characters are escaped, values
 * with spaces or quotes are quoted. */
static void out_escaped(struct out *o, const char *s, bool quote_if_needed) {
    bool quote = quote_if_needed && (!*s || strpbrk(s, " \"=\\") != NULL);
    if (quote)
        out_char(o, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            out_str(o, "\\n");
        else if (*p < 0x20 || *p == 0x7f) {
            char hex[5];
            snprintf(hex, sizeof(hex), "\\x%02x", *p);
            out_str(o, hex);
        } else if (quote && (*p == '"' || *p == '\\')) {
            out_char(o, '\\');
            out_char(o, (char)*p);
        } else
            out_char(o, (char)*p);
    }
    if (quote)
        out_char(o, '"');
}

size_t log_format_line(char *buf, size_t size, int prio, const char *message, const struct log_field *fields,
                       size_t n_fields) {
    if (size < 2)
        return 0;
    struct out o = {buf, size, 0};
    char pfx[8];
    snprintf(pfx, sizeof(pfx), "<%d>", prio & 7);
    out_str(&o, pfx);
    out_escaped(&o, message, false);
    for (size_t i = 0; i < n_fields; i++) {
        if (!fields[i].value || !log_field_name_valid(fields[i].name))
            continue;
        out_char(&o, ' ');
        out_str(&o, fields[i].name);
        out_char(&o, '=');
        out_escaped(&o, fields[i].value, true);
    }
    o.buf[o.len++] = '\n';
    return o.len;
}

static int put_iov(struct iovec *iov, size_t n_iov, size_t *i, char *storage, size_t size, size_t *used,
                   const char *name, const char *value) {
    size_t nl = strlen(name), vl = strlen(value);
    if (*i >= n_iov)
        return -E2BIG;
    if (*used + nl + 1 + vl > size)
        return -ENOBUFS;
    char *p = storage + *used;
    memcpy(p, name, nl);
    p[nl] = '=';
    memcpy(p + nl + 1, value, vl);
    iov[*i].iov_base = p;
    iov[*i].iov_len = nl + 1 + vl;
    (*i)++;
    *used += nl + 1 + vl;
    return 0;
}

int log_build_iovec(struct iovec *iov, size_t n_iov, char *storage, size_t size, int prio,
                    const char *message_id, const char *message, const struct log_field *fields,
                    size_t n_fields) {
    size_t i = 0, used = 0;
    char p[4];
    snprintf(p, sizeof(p), "%d", prio & 7);
    int r = put_iov(iov, n_iov, &i, storage, size, &used, "MESSAGE", message);
    if (r >= 0)
        r = put_iov(iov, n_iov, &i, storage, size, &used, "PRIORITY", p);
    if (r >= 0)
        r = put_iov(iov, n_iov, &i, storage, size, &used, "SYSLOG_IDENTIFIER", "aigw");
    if (r >= 0 && message_id)
        r = put_iov(iov, n_iov, &i, storage, size, &used, "MESSAGE_ID", message_id);
    for (size_t f = 0; r >= 0 && f < n_fields; f++) {
        if (!fields[f].value)
            continue;
        if (!log_field_name_valid(fields[f].name))
            return -EINVAL;
        r = put_iov(iov, n_iov, &i, storage, size, &used, fields[f].name, fields[f].value);
    }
    return r < 0 ? r : (int)i;
}

void log_struct(int prio, const char *message_id, const struct log_field *fields, size_t n_fields,
                const char *fmt, ...) {
    if (prio > log_get_level())
        return;
    int saved_errno = errno;
    char message[MAX_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);

    if (to_journal) {
        struct iovec iov[MAX_FIELDS + 4];
        char storage[MAX_MESSAGE + 4096];
        int n = log_build_iovec(iov, ELEMENTSOF(iov), storage, sizeof(storage), prio, message_id, message,
                                fields, n_fields);
        if (n > 0 && sd_journal_sendv(iov, n) >= 0) {
            errno = saved_errno;
            return;
        }
        /* fall back to stderr: the journal still gets it, without fields */
    }
    char line[MAX_MESSAGE + 2048];
    size_t len = log_format_line(line, sizeof(line), prio, message, fields, n_fields);
    /* one write per entry: lines from several threads do not interleave */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    errno = saved_errno;
}
