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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_and_remove),
        cmocka_unit_test(test_linked_ok_sees_a_broken_neighbour),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
