/* SPDX-License-Identifier: MIT */
#pragma once

/* Logging: structured entries to the journal when stderr is connected to
 * it (JOURNAL_STREAM matches), else one line per entry on stderr with a
 * <N> priority prefix, which journald and systemd-cat also understand.
 * Field names are fixed here so journalctl filters stay stable. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>
#include <syslog.h>

#define LOG_F_REQUEST_ID "AIGW_REQUEST_ID"
#define LOG_F_ROUTE "AIGW_ROUTE"
#define LOG_F_METHOD "AIGW_METHOD"
#define LOG_F_STATUS "AIGW_STATUS"
#define LOG_F_DURATION "AIGW_DURATION_USEC"
#define LOG_F_PEER "AIGW_PEER"
#define LOG_F_PROTOCOL "AIGW_PROTOCOL"
#define LOG_F_MODEL "AIGW_MODEL"
#define LOG_F_BACKEND "AIGW_BACKEND"
#define LOG_F_KEY "AIGW_KEY"
#define LOG_F_UPSTREAM_STATUS "AIGW_UPSTREAM_STATUS"
#define LOG_F_OVERHEAD "AIGW_OVERHEAD_USEC"
#define LOG_F_ERRNO "ERRNO"

/* MESSAGE_IDs of lifecycle events (journalctl MESSAGE_ID=...). */
#define LOG_MID_STARTED "3d5b0c1e9a7f4c2b8e6d1a0f5c4b3a29"
#define LOG_MID_STOPPING "7a1c9e3b5d2f4a6c8e0b1d3f5a7c9e12"
#define LOG_MID_STOPPED "0b9d7f5e3c1a4b2d6f8e0a2c4e6b8d31"
#define LOG_MID_RELOADED "5e2a8c4f6b0d4e1a9c7f3b5d1e8a6c43"
#define LOG_MID_RELOAD_FAILED "c4e6a8b0d2f44c1e8a6b0d9f2e4c6a55"

struct log_field {
    const char *name;
    const char *value; /* NULL: field left out */
};

void log_setup(void);
void log_set_level(int level);
int log_get_level(void);
bool log_is_journal(void);

void log_struct(int prio, const char *message_id, const struct log_field *fields, size_t n_fields,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define log_error(...) log_struct(LOG_ERR, NULL, NULL, 0, __VA_ARGS__)
#define log_warning(...) log_struct(LOG_WARNING, NULL, NULL, 0, __VA_ARGS__)
#define log_notice(...) log_struct(LOG_NOTICE, NULL, NULL, 0, __VA_ARGS__)
#define log_info(...) log_struct(LOG_INFO, NULL, NULL, 0, __VA_ARGS__)
#define log_debug(...) log_struct(LOG_DEBUG, NULL, NULL, 0, __VA_ARGS__)

/* Pure parts, exposed for tests. */
bool log_field_name_valid(const char *name);
/* "<6>message FIELD=value FIELD2=\"with space\"\n"; returns the length
 * written (truncated to fit, always newline-terminated) */
size_t log_format_line(char *buf, size_t size, int prio, const char *message, const struct log_field *fields,
                       size_t n_fields);
/* Fills iov with MESSAGE=, PRIORITY=, MESSAGE_ID= and the fields, using
 * storage (size bytes) for the joined strings; returns the iovec count or
 * a negative errno. */
int log_build_iovec(struct iovec *iov, size_t n_iov, char *storage, size_t size, int prio,
                    const char *message_id, const char *message, const struct log_field *fields,
                    size_t n_fields);
/* JOURNAL_STREAM="dev:ino" compared with the given fd's stat. */
bool log_stream_is_journal(const char *journal_stream, int fd);
