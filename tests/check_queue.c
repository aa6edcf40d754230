/* Bounded queue and wait group: delivery exactly once across a producer x consumer x capacity
 * matrix, blocking proved by waiter counts (never by sleeping), close semantics, and no lost
 * wake-ups. libvips-free, so Helgrind can check it (PM_TEST_ITEMS shrinks the load). */
#define _GNU_SOURCE
#include "internal.h"
#include "support.h"

#include <check.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static long items_total(void)
{
    const char *s = getenv("PM_TEST_ITEMS");
    long n = s ? atol(s) : 100000;
    return n > 0 ? n : 100000;
}

/* Spin (yielding) until cond holds; the Check timeout fails a test that never gets there. */
#define WAIT_UNTIL(cond)                                                                           \
    do {                                                                                           \
        while (!(cond))                                                                            \
            sched_yield();                                                                         \
    } while (0)

typedef struct matrix_ctx {
    pm__queue *q;
    long first, count;   /* producer: items [first, first+count) */
    unsigned char *seen; /* consumers: atomically incremented per item */
    long popped;         /* consumer: items it took */
} matrix_ctx;

static void *producer(void *arg)
{
    matrix_ctx *c = arg;
    for (long i = c->first; i < c->first + c->count; i++)
        if (pm__queue_push(c->q, (void *)(uintptr_t)(i + 1)) != PM_OK)
            return (void *)1;
    return NULL;
}

static void *consumer(void *arg)
{
    matrix_ctx *c = arg;
    void *item;
    while (pm__queue_pop(c->q, &item) == PM_OK) {
        long k = (long)(uintptr_t)item - 1;
        __atomic_fetch_add(&c->seen[k], 1, __ATOMIC_RELAXED);
        c->popped++;
    }
    return NULL;
}

/* producers 1..4 x consumers 1..8 x capacity 1..3 */
START_TEST(test_matrix_exactly_once)
{
    int producers = _i / 24 + 1, consumers = (_i / 3) % 8 + 1, capacity = _i % 3 + 1;
    /* a fifth of the items in each of the 96 cells (2 million in all): the full count made
     * this the longest test of the suite (235 s of 760) on a 2-core machine */
    long n = items_total() / 5 > 0 ? items_total() / 5 : 1;
    pm__queue *q;
    ck_assert_int_eq(pm__queue_create(&q, (size_t)capacity), PM_OK);
    unsigned char *seen = calloc((size_t)n, 1);
    matrix_ctx pc[4], cc[8];
    pthread_t pt[4], ct[8];
    for (int i = 0; i < consumers; i++) {
        cc[i] = (matrix_ctx){q, 0, 0, seen, 0};
        ck_assert_int_eq(pthread_create(&ct[i], NULL, consumer, &cc[i]), 0);
    }
    long per = n / producers;
    for (int i = 0; i < producers; i++) {
        long first = per * i, count = (i == producers - 1) ? n - first : per;
        pc[i] = (matrix_ctx){q, first, count, NULL, 0};
        ck_assert_int_eq(pthread_create(&pt[i], NULL, producer, &pc[i]), 0);
    }
    void *ret;
    int push_failures = 0;
    for (int i = 0; i < producers; i++) {
        pthread_join(pt[i], &ret);
        push_failures += ret != NULL;
    }
    pm__queue_close(q);
    long total = 0;
    for (int i = 0; i < consumers; i++) {
        pthread_join(ct[i], NULL);
        total += cc[i].popped;
    }
    ck_assert_int_eq(push_failures, 0);
    ck_assert_int_eq(total, n);
    long bad = 0;
    for (long k = 0; k < n; k++)
        bad += seen[k] != 1;
    ck_assert_msg(bad == 0, "%ld items not delivered exactly once (p=%d c=%d cap=%d)", bad,
                  producers, consumers, capacity);
    free(seen);
    pm__queue_destroy(q);
}
END_TEST

typedef struct one_op {
    pm__queue *q;
    void *item;
    int rc;
} one_op;

static void *push_one(void *arg)
{
    one_op *o = arg;
    o->rc = pm__queue_push(o->q, o->item);
    return NULL;
}

static void *pop_one(void *arg)
{
    one_op *o = arg;
    o->rc = pm__queue_pop(o->q, &o->item);
    return NULL;
}

START_TEST(test_push_blocks_when_full)
{
    pm__queue *q;
    ck_assert_int_eq(pm__queue_create(&q, 2), PM_OK);
    ck_assert_int_eq(pm__queue_push(q, (void *)1), PM_OK);
    ck_assert_int_eq(pm__queue_push(q, (void *)2), PM_OK);
    one_op o = {q, (void *)3, 99};
    pthread_t t;
    pthread_create(&t, NULL, push_one, &o);
    WAIT_UNTIL(pm__queue_waiting_pushers(q) == 1); /* it is blocked inside push */
    ck_assert_uint_eq(pm__queue_length(q), 2);     /* and its item is not in */
    ck_assert_int_eq(__atomic_load_n(&o.rc, __ATOMIC_SEQ_CST), 99);
    void *item;
    ck_assert_int_eq(pm__queue_pop(q, &item), PM_OK);
    ck_assert_ptr_eq(item, (void *)1);
    pthread_join(t, NULL); /* the pop made room: the push completes */
    ck_assert_int_eq(o.rc, PM_OK);
    ck_assert_uint_eq(pm__queue_length(q), 2);
    ck_assert_int_eq(pm__queue_pop(q, &item), PM_OK);
    ck_assert_ptr_eq(item, (void *)2);
    ck_assert_int_eq(pm__queue_pop(q, &item), PM_OK);
    ck_assert_ptr_eq(item, (void *)3);
    pm__queue_destroy(q);
}
END_TEST

/* A pusher that found the queue full stays asleep until half is free, then goes in behind
 * what is left: the scanner is woken once per half a queue, not once per file. */
START_TEST(test_full_pusher_waits_for_half)
{
    pm__queue *q;
    ck_assert_int_eq(pm__queue_create(&q, 8), PM_OK);
    for (uintptr_t i = 1; i <= 8; i++)
        ck_assert_int_eq(pm__queue_push(q, (void *)i), PM_OK);
    one_op o = {q, (void *)9, 99};
    pthread_t t;
    pthread_create(&t, NULL, push_one, &o);
    WAIT_UNTIL(pm__queue_waiting_pushers(q) == 1);
    void *item;
    for (uintptr_t i = 1; i <= 3; i++) {
        ck_assert_int_eq(pm__queue_pop(q, &item), PM_OK);
        ck_assert_ptr_eq(item, (void *)i);
    }
    /* 5 left, above half: the pusher must not go in, however long it is given */
    usleep(200 * 1000);
    ck_assert_uint_eq(pm__queue_length(q), 5);
    ck_assert_uint_eq(pm__queue_waiting_pushers(q), 1);
    ck_assert_int_eq(__atomic_load_n(&o.rc, __ATOMIC_SEQ_CST), 99);
    ck_assert_int_eq(pm__queue_pop(q, &item), PM_OK); /* 4 left: half */
    pthread_join(t, NULL);
    ck_assert_int_eq(o.rc, PM_OK);
    ck_assert_uint_eq(pm__queue_length(q), 5);
    for (uintptr_t i = 5; i <= 9; i++) {
        ck_assert_int_eq(pm__queue_pop(q, &item), PM_OK);
        ck_assert_ptr_eq(item, (void *)i);
    }
    pm__queue_destroy(q);
}
END_TEST

START_TEST(test_pop_blocks_when_empty)
{
    pm__queue *q;
    ck_assert_int_eq(pm__queue_create(&q, 1), PM_OK);
    one_op o = {q, NULL, 99};
    pthread_t t;
    pthread_create(&t, NULL, pop_one, &o);
    WAIT_UNTIL(pm__queue_waiting_poppers(q) == 1);
    ck_assert_int_eq(__atomic_load_n(&o.rc, __ATOMIC_SEQ_CST), 99);
    ck_assert_int_eq(pm__queue_push(q, (void *)7), PM_OK);
    pthread_join(t, NULL);
    ck_assert_int_eq(o.rc, PM_OK);
    ck_assert_ptr_eq(o.item, (void *)7);
    pm__queue_destroy(q);
}
END_TEST

START_TEST(test_close_drains_backlog)
{
    pm__queue *q;
    ck_assert_int_eq(pm__queue_create(&q, 3), PM_OK);
    for (uintptr_t i = 1; i <= 3; i++)
        ck_assert_int_eq(pm__queue_push(q, (void *)i), PM_OK);
    pm__queue_close(q);
    pm__queue_close(q); /* idempotent */
    ck_assert_int_eq(pm__queue_push(q, (void *)4), PM_ERR_CANCELLED);
    void *item;
    for (uintptr_t i = 1; i <= 3; i++) {
        ck_assert_int_eq(pm__queue_pop(q, &item), PM_OK);
        ck_assert_ptr_eq(item, (void *)i);
    }
    ck_assert_int_eq(pm__queue_pop(q, &item), PM_ERR_CANCELLED);
    pm__queue_destroy(q);
}
END_TEST

START_TEST(test_close_wakes_blocked_pushers)
{
    pm__queue *q;
    ck_assert_int_eq(pm__queue_create(&q, 1), PM_OK);
    ck_assert_int_eq(pm__queue_push(q, (void *)1), PM_OK);
    one_op o[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        o[i] = (one_op){q, (void *)(uintptr_t)(i + 2), 99};
        pthread_create(&t[i], NULL, push_one, &o[i]);
    }
    WAIT_UNTIL(pm__queue_waiting_pushers(q) == 3);
    pm__queue_close(q);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(o[i].rc, PM_ERR_CANCELLED);
    }
    ck_assert_uint_eq(pm__queue_length(q), 1);
    pm__queue_destroy(q);
}
END_TEST

START_TEST(test_close_wakes_blocked_poppers)
{
    pm__queue *q;
    ck_assert_int_eq(pm__queue_create(&q, 2), PM_OK);
    one_op o[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        o[i] = (one_op){q, NULL, 99};
        pthread_create(&t[i], NULL, pop_one, &o[i]);
    }
    WAIT_UNTIL(pm__queue_waiting_poppers(q) == 4);
    pm__queue_close(q);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(o[i].rc, PM_ERR_CANCELLED);
    }
    pm__queue_destroy(q);
}
END_TEST

START_TEST(test_create_rejects_zero_capacity)
{
    pm__queue *q = NULL;
    ck_assert_int_eq(pm__queue_create(&q, 0), PM_ERR_USAGE);
    ck_assert_ptr_null(q);
}
END_TEST

/* Two threads pass a token through two capacity-1 queues: any lost wake-up hangs (and the
 * Check timeout fails the test). */
typedef struct pingpong {
    pm__queue *in, *out;
    long rounds;
} pingpong;

static void *ponger(void *arg)
{
    pingpong *p = arg;
    void *item;
    for (long i = 0; i < p->rounds; i++) {
        if (pm__queue_pop(p->in, &item) != PM_OK)
            return (void *)1;
        if (pm__queue_push(p->out, item) != PM_OK)
            return (void *)1;
    }
    return NULL;
}

START_TEST(test_no_lost_wakeups_pingpong)
{
    pm__queue *a, *b;
    pm__queue_create(&a, 1);
    pm__queue_create(&b, 1);
    long rounds = items_total();
    pingpong p = {a, b, rounds};
    pthread_t t;
    pthread_create(&t, NULL, ponger, &p);
    void *item;
    for (long i = 0; i < rounds; i++) {
        ck_assert_int_eq(pm__queue_push(a, (void *)(uintptr_t)(i + 1)), PM_OK);
        ck_assert_int_eq(pm__queue_pop(b, &item), PM_OK);
        ck_assert_ptr_eq(item, (void *)(uintptr_t)(i + 1));
    }
    void *ret;
    pthread_join(t, &ret);
    ck_assert_ptr_null(ret);
    pm__queue_destroy(a);
    pm__queue_destroy(b);
}
END_TEST

/* ---- wait group ---- */

START_TEST(test_wg_zero_returns_at_once)
{
    pm__waitgroup wg;
    ck_assert_int_eq(pm__waitgroup_init(&wg), PM_OK);
    pm__waitgroup_wait(&wg);
    pm__waitgroup_add(&wg, 2);
    pm__waitgroup_done(&wg);
    pm__waitgroup_done(&wg);
    pm__waitgroup_wait(&wg);
    ck_assert_int_eq(pm__waitgroup_count(&wg), 0);
    pm__waitgroup_destroy(&wg);
}
END_TEST

typedef struct wg_waiter {
    pm__waitgroup *wg;
    int returned;
} wg_waiter;

static void *wg_wait_thread(void *arg)
{
    wg_waiter *w = arg;
    pm__waitgroup_wait(w->wg);
    __atomic_store_n(&w->returned, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

START_TEST(test_wg_wait_blocks_until_done)
{
    pm__waitgroup wg;
    pm__waitgroup_init(&wg);
    pm__waitgroup_add(&wg, 3);
    wg_waiter w[2] = {{&wg, 0}, {&wg, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, wg_wait_thread, &w[i]);
    WAIT_UNTIL(pm__waitgroup_waiters(&wg) == 2);
    pm__waitgroup_done(&wg);
    pm__waitgroup_done(&wg);
    /* count is 1: both are still blocked inside wait */
    ck_assert_int_eq(pm__waitgroup_waiters(&wg), 2);
    ck_assert_int_eq(__atomic_load_n(&w[0].returned, __ATOMIC_SEQ_CST), 0);
    pm__waitgroup_done(&wg);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].returned, 1);
    }
    pm__waitgroup_destroy(&wg);
}
END_TEST

static void *wg_churn(void *arg)
{
    pm__waitgroup *wg = arg;
    for (int i = 0; i < 10000; i++)
        pm__waitgroup_done(wg);
    return NULL;
}

START_TEST(test_wg_concurrent_done)
{
    pm__waitgroup wg;
    pm__waitgroup_init(&wg);
    pm__waitgroup_add(&wg, 8 * 10000);
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, wg_churn, &wg);
    pm__waitgroup_wait(&wg);
    ck_assert_int_eq(pm__waitgroup_count(&wg), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    pm__waitgroup_destroy(&wg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("queue");
    TCase *m = tcase_create("matrix");
    tcase_set_timeout(m, 60);
    tcase_add_loop_test(m, test_matrix_exactly_once, 0, 4 * 8 * 3);
    suite_add_tcase(s, m);
    TCase *b = tcase_create("blocking");
    tcase_set_timeout(b, 30);
    tcase_add_test(b, test_push_blocks_when_full);
    tcase_add_test(b, test_full_pusher_waits_for_half);
    tcase_add_test(b, test_pop_blocks_when_empty);
    tcase_add_test(b, test_close_drains_backlog);
    tcase_add_test(b, test_close_wakes_blocked_pushers);
    tcase_add_test(b, test_close_wakes_blocked_poppers);
    tcase_add_test(b, test_create_rejects_zero_capacity);
    tcase_add_test(b, test_no_lost_wakeups_pingpong);
    suite_add_tcase(s, b);
    TCase *w = tcase_create("waitgroup");
    tcase_set_timeout(w, 30);
    tcase_add_test(w, test_wg_zero_returns_at_once);
    tcase_add_test(w, test_wg_wait_blocks_until_done);
    tcase_add_test(w, test_wg_concurrent_done);
    suite_add_tcase(s, w);
    return pmt_run_suite(s);
}
