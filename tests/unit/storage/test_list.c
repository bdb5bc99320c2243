/* Unit tests for the intrusive list: order of pushes, removal from any place, emptiness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "storage/list.h"

#define ITEMS 5

struct item {
    int value;
    struct tandem_list link;
};

/* The values in list order into out; returns how many. */
static int values(const struct tandem_list *head, int *out)
{
    int n = 0;
    for (const struct tandem_list *l = head->next; l != head && n < ITEMS + 1; l = l->next) {
        out[n++] = tandem_list_entry(l, const struct item, link)->value;
    }
    return n;
}

static void test_push_and_remove(void **state)
{
    (void)state;
    struct tandem_list head;
    struct item items[ITEMS];
    int got[ITEMS + 1];
    tandem_list_init(&head);
    assert_true(tandem_list_empty(&head));
    for (int i = 0; i < ITEMS; i++) {
        items[i].value = i;
        if (i % 2 == 0) {
            tandem_list_push_back(&head, &items[i].link);
        } else {
            tandem_list_push_front(&head, &items[i].link);
        }
    }
    assert_int_equal(values(&head, got), ITEMS);
    const int order[ITEMS] = {3, 1, 0, 2, 4};
    assert_memory_equal(got, order, sizeof order);

    tandem_list_remove(&items[0].link); /* middle */
    tandem_list_remove(&items[3].link); /* first */
    tandem_list_remove(&items[4].link); /* last */
    assert_true(items[0].link.next == &items[0].link);
    assert_int_equal(values(&head, got), 2);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 2);
    tandem_list_remove(&items[1].link);
    tandem_list_remove(&items[2].link);
    assert_true(tandem_list_empty(&head));
}

static void test_linked_ok_sees_a_broken_neighbour(void **state)
{
    (void)state;
    struct tandem_list head, other;
    struct item a, b;
    tandem_list_init(&head);
    tandem_list_push_back(&head, &a.link);
    tandem_list_push_back(&head, &b.link);
    assert_true(tandem_list_linked_ok(&a.link));
    b.link.prev = &other; /* what a neighbour's stray write would leave */
    assert_false(tandem_list_linked_ok(&a.link));
}

/* A FIFO: first and pop_front take items in push_back order; foreach visits them in order. */
static void test_fifo_and_foreach(void **state)
{
    (void)state;
    struct tandem_list head, *link;
    struct item items[ITEMS];
    tandem_list_init(&head);
    for (int i = 0; i < ITEMS; i++) {
        items[i].value = i;
        tandem_list_push_back(&head, &items[i].link);
    }
    int seen = 0;
    tandem_list_foreach(link, &head)
    {
        assert_int_equal(tandem_list_entry(link, struct item, link)->value, seen++);
    }
    assert_int_equal(seen, ITEMS);
    assert_ptr_equal(tandem_list_first(&head), &items[0].link);
    for (int i = 0; i < ITEMS; i++) {
        link = tandem_list_pop_front(&head);
        assert_int_equal(tandem_list_entry(link, struct item, link)->value, i);
        assert_true(link->next == link && link->prev == link); /* unlinked */
    }
    assert_true(tandem_list_empty(&head));
}

/* take_all moves a whole list in order and leaves the source empty and reusable; an empty source
 * leaves the target empty. */
static void test_take_all(void **state)
{
    (void)state;
    struct tandem_list from, to;
    struct item items[ITEMS], late;
    int got[ITEMS + 1];
    tandem_list_init(&from);
    tandem_list_init(&to);
    tandem_list_take_all(&to, &from);
    assert_true(tandem_list_empty(&to) && tandem_list_empty(&from));
    for (int i = 0; i < ITEMS; i++) {
        items[i].value = i;
        tandem_list_push_back(&from, &items[i].link);
    }
    tandem_list_take_all(&to, &from);
    assert_true(tandem_list_empty(&from));
    assert_int_equal(values(&to, got), ITEMS);
    const int order[ITEMS] = {0, 1, 2, 3, 4};
    assert_memory_equal(got, order, sizeof order);
    late.value = 9; /* linked onto the source while the batch runs: waits there */
    tandem_list_push_back(&from, &late.link);
    assert_int_equal(values(&from, got), 1);
    assert_int_equal(got[0], 9);
    assert_int_equal(values(&to, got), ITEMS);
    assert_true(tandem_list_linked_ok(&items[0].link) && tandem_list_linked_ok(&items[4].link));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_and_remove),
        cmocka_unit_test(test_linked_ok_sees_a_broken_neighbour),
        cmocka_unit_test(test_fifo_and_foreach),
        cmocka_unit_test(test_take_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
