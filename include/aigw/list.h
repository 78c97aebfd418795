/* SPDX-License-Identifier: MIT */
#pragma once

/* An intrusive doubly linked list with head and tail, for LRU orders
 * (the rate limiter's idle entries, the webhook's sessions). O(1) unlink
 * and push; the node lives inside the element. */

#include <stddef.h>

struct aigw_dlist_node {
    struct aigw_dlist_node *prev, *next;
};

struct aigw_dlist {
    struct aigw_dlist_node *head, *tail;
};

#define AIGW_DLIST_ENTRY(node, type, member) ((type *)((char *)(node) - offsetof(type, member)))

static inline void aigw_dlist_unlink(struct aigw_dlist *l, struct aigw_dlist_node *n) {
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

static inline void aigw_dlist_push_head(struct aigw_dlist *l, struct aigw_dlist_node *n) {
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
}
