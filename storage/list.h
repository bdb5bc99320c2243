/* An intrusive, circular, doubly linked list (libuv's QUEUE idea): an owner embeds a head, each
 * item embeds a link, and every unlink checks that its neighbours still point back at it. */
#ifndef TANDEM_STORAGE_LIST_H
#define TANDEM_STORAGE_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "storage/assert.h"

/* A head (the list) or a link (an item). An unlinked link points at itself. */
struct tandem_list {
    struct tandem_list *prev, *next;
};

/* The struct of type holding link at member. */
#define tandem_list_entry(link, type, member) ((type *)((char *)(link)-offsetof(type, member)))

static inline void tandem_list_init(struct tandem_list *l)
{
    l->prev = l->next = l;
}

static inline bool tandem_list_empty(const struct tandem_list *head)
{
    return head->next == head;
}

/* Whether link's neighbours point back at it: false after a neighbour freed or overwrote one. */
static inline bool tandem_list_linked_ok(const struct tandem_list *link)
{
    return link->next->prev == link && link->prev->next == link;
}

/* Links link between two neighbours of a list. */
static inline void tandem_list_insert(struct tandem_list *prev, struct tandem_list *next,
                                      struct tandem_list *link)
{
    tandem_assert(prev->next == next && next->prev == prev);
    link->prev = prev;
    link->next = next;
    prev->next = link;
    next->prev = link;
}

static inline void tandem_list_push_front(struct tandem_list *head, struct tandem_list *link)
{
    tandem_list_insert(head, head->next, link);
}

static inline void tandem_list_push_back(struct tandem_list *head, struct tandem_list *link)
{
    tandem_list_insert(head->prev, head, link);
}

/* Unlinks link from whatever list holds it; it is left pointing at itself. */
static inline void tandem_list_remove(struct tandem_list *link)
{
    tandem_assert(tandem_list_linked_ok(link));
    link->prev->next = link->next;
    link->next->prev = link->prev;
    tandem_list_init(link);
}

#endif
