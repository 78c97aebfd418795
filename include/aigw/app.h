/* SPDX-License-Identifier: MIT */
#pragma once

/* Process-wide state shared by the workers and owned by the main thread:
 * what each config generation needs beyond the parsed file (API keys,
 * trusted proxies), and the services that outlive a config (metrics,
 * rate limits, backend health, webhook sessions). */

#include <stdbool.h>
#include <stdint.h>

#include "aigw/config.h"
#include "aigw/session-store.h"

/* Checks that need more than the parser (keys file, proxy list...). */
int app_check_config(struct aigw_config *c, struct aigw_config_errors *errors);
int app_init(struct aigw_config *c);
/* c is about to become the current config (start and reload). */
void app_config_applied(struct aigw_config *c);
/* After READY=1: warnings about the running setup. */
void app_started(const struct aigw_config *c);
/* From the main thread, about once a second. */
void app_tick(uint64_t now_usec);
void app_done(void);
int app_keygen(int argc, char **argv);

struct backend_states;
struct aigw_metrics;
struct aigw_ratelimit;
struct aigw_session_store;
struct aigw_session_limits app_session_limits(const struct aigw_config *c);
struct backend_states *app_backend_states(void);
struct aigw_metrics *app_metrics(void);
struct aigw_ratelimit *app_ratelimit(void);
struct aigw_session_store *app_sessions(void);
struct aigw_process_stats;
/* The last /proc reading of the main thread (false if none succeeded). */
bool app_process_stats(struct aigw_process_stats *ret);
