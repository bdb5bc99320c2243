/* Intrusive lists for node/http (the links live in the elements, as in libuv's and raft's
 * queue.h): one place for the pointer surgery the server, the client and the park all need.
 * head and tail are lvalues of the element pointer type; prev and next name the link fields. */
#ifndef TANDEM_NODE_HTTP_LIST_H
#define TANDEM_NODE_HTTP_LIST_H

#include <stddef.h>

/* Appends x to a doubly-linked list. */
#define TANDEM_LIST_APPEND(head, tail, x, prev, next)                                              \
    do {                                                                                           \
        (x)->next = NULL;                                                                          \
        (x)->prev = (tail);                                                                        \
        *((tail) != NULL ? &(tail)->next : &(head)) = (x);                                         \
        (tail) = (x);                                                                              \
    } while (0)

/* Unlinks x from a doubly-linked list and clears its links. */
#define TANDEM_LIST_UNLINK(head, tail, x, prev, next)                                              \
    do {                                                                                           \
        *((x)->prev != NULL ? &(x)->prev->next : &(head)) = (x)->next;                             \
        *((x)->next != NULL ? &(x)->next->prev : &(tail)) = (x)->prev;                             \
        (x)->prev = (x)->next = NULL;                                                              \
    } while (0)

/* Appends x to a singly-linked queue. */
#define TANDEM_QUEUE_APPEND(head, tail, x, next)                                                   \
    do {                                                                                           \
        (x)->next = NULL;                                                                          \
        *((tail) != NULL ? &(tail)->next : &(head)) = (x);                                         \
        (tail) = (x);                                                                              \
    } while (0)

#endif
