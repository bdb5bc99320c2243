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

/* The first item's link of a non-empty list. */
static inline struct tandem_list *tandem_list_first(const struct tandem_list *head)
{
    tandem_assert(head->next != head);
    return head->next;
}

/* Unlinks and returns the first item's link of a non-empty list (a FIFO's pop). */
static inline struct tandem_list *tandem_list_pop_front(struct tandem_list *head)
{
    struct tandem_list *link = tandem_list_first(head);
    tandem_list_remove(link);
    return link;
}

/* Moves every item of from, in order, onto the empty head to, and leaves from empty: a batch
 * taken off a list, so items linked onto from while the batch runs wait for the next one. */
static inline void tandem_list_take_all(struct tandem_list *to, struct tandem_list *from)
{
    tandem_assert(tandem_list_empty(to));
    if (tandem_list_empty(from)) {
        return;
    }
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    tandem_list_init(from);
}

/* Visits every link of head, first to last; the body must not unlink `link` nor the next one. */
#define tandem_list_foreach(link, head)                                                            \
    for ((link) = (head)->next; (link) != (head); (link) = (link)->next)

#endif
