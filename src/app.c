/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "aigw/app.h"
#include "aigw/log.h"

int app_check_config(struct aigw_config *c, struct aigw_config_errors *errors) {
    (void)c;
    (void)errors;
    return 0;
}

int app_init(struct aigw_config *c) {
    app_config_applied(c);
    return 0;
}

void app_config_applied(struct aigw_config *c) {
    (void)c;
}

void app_started(const struct aigw_config *c) {
    (void)c;
}

void app_done(void) {
}

int app_keygen(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "aigw keygen: not built in this version\n");
    return 1;
}
