/* SPDX-License-Identifier: MIT */
#pragma once

/* Small helpers shared by every module: cleanup attributes, ownership
 * hand-off, array sizes. Modelled on systemd's alloc-util.h/macro.h. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_result_ __attribute__((warn_unused_result))

/* Hand ownership of *p out and leave NULL behind, so a cleanup attribute on
 * the source variable does not free what was returned. */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _tp_ = (p);                                                                  \
        (p) = NULL;                                                                                \
        _tp_;                                                                                      \
    })

#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _tf_ = (fd);                                                                           \
        (fd) = -1;                                                                                 \
        _tf_;                                                                                      \
    })

static inline void freep(void *p) {
    free(*(void **)p);
}
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
#define _cleanup_close_ _cleanup_(closep)

/* Define a cleanup function for a type with a NULL-accepting destructor:
 * DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete) gives cJSON_Deletep. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
    static inline void func##p(type *p) {                                                          \
        if (*p)                                                                                    \
            func(*p);                                                                              \
    }

#define MIN(a, b)                                                                                  \
    ({                                                                                             \
        __typeof__(a) _a_ = (a);                                                                   \
        __typeof__(b) _b_ = (b);                                                                   \
        _a_ < _b_ ? _a_ : _b_;                                                                     \
    })
#define MAX(a, b)                                                                                  \
    ({                                                                                             \
        __typeof__(a) _a_ = (a);                                                                   \
        __typeof__(b) _b_ = (b);                                                                   \
        _a_ > _b_ ? _a_ : _b_;                                                                     \
    })

#define USEC_PER_SEC ((uint64_t)1000000)
#define USEC_PER_MSEC ((uint64_t)1000)

static inline int negative_errno(void) {
    return errno > 0 ? -errno : -EIO;
}
