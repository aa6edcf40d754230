/* Bounded MPMC queue: push blocks when full (until half is free), pop blocks when empty, close
 * wakes everyone.
 * A ring buffer under one mutex with two condition variables. */
#include "internal.h"

#include <stdlib.h>

struct pm__queue {
    pthread_mutex_t mu;
    pthread_cond_t not_full;
    pthread_cond_t not_empty;
    void **ring;            /* guarded by mu */
    size_t capacity;        /* fixed */
    size_t head;            /* guarded by mu: next to pop */
    size_t length;          /* guarded by mu */
    size_t waiting_pushers; /* guarded by mu */
    size_t waiting_poppers; /* guarded by mu */
    int closed;             /* guarded by mu */
};

int pm__queue_create(pm__queue **out, size_t capacity)
{
    if (capacity == 0)
        return PM_ERR_USAGE;
    pm__queue *q = calloc(1, sizeof(*q));
    if (!q)
        return PM_ERR_NOMEM;
    q->ring = calloc(capacity, sizeof(void *));
    if (!q->ring) {
        free(q);
        return PM_ERR_NOMEM;
    }
    q->capacity = capacity;
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        free(q->ring);
        free(q);
        return PM_ERR_THREAD;
    }
    if (pthread_cond_init(&q->not_full, NULL) != 0) {
        pthread_mutex_destroy(&q->mu);
        free(q->ring);
        free(q);
        return PM_ERR_THREAD;
    }
    if (pthread_cond_init(&q->not_empty, NULL) != 0) {
        pthread_cond_destroy(&q->not_full);
        pthread_mutex_destroy(&q->mu);
        free(q->ring);
        free(q);
        return PM_ERR_THREAD;
    }
    *out = q;
    return PM_OK;
}

void pm__queue_destroy(pm__queue *q)
{
    if (!q)
        return;
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->mu);
    free(q->ring);
    free(q);
}

/* A pusher that finds the queue full sleeps until it is down to half (the low water mark),
 * then refills it in one go: one wake-up for capacity/2 items, not one per item. With
 * 1,000 small files the scanner had slept and been woken again for every file a worker took. */
static size_t low_water(const pm__queue *q)
{
    return q->capacity / 2;
}

int pm__queue_push(pm__queue *q, void *item)
{
    pthread_mutex_lock(&q->mu);
    if (q->length == q->capacity) {
        while (!q->closed && q->length > low_water(q)) {
            q->waiting_pushers++;
            pthread_cond_wait(&q->not_full, &q->mu);
            q->waiting_pushers--;
        }
    }
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return PM_ERR_CANCELLED;
    }
    q->ring[(q->head + q->length) % q->capacity] = item;
    q->length++;
    /* Waiters are counted under the mutex before they wait: signal only when one exists. */
    if (q->waiting_poppers > 0)
        pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return PM_OK;
}

int pm__queue_pop(pm__queue *q, void **item)
{
    pthread_mutex_lock(&q->mu);
    while (!q->closed && q->length == 0) {
        q->waiting_poppers++;
        pthread_cond_wait(&q->not_empty, &q->mu);
        q->waiting_poppers--;
    }
    if (q->length == 0) { /* closed and drained */
        pthread_mutex_unlock(&q->mu);
        return PM_ERR_CANCELLED;
    }
    *item = q->ring[q->head];
    q->ring[q->head] = NULL;
    q->head = (q->head + 1) % q->capacity;
    q->length--;
    if (q->waiting_pushers > 0 && q->length <= low_water(q))
        pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return PM_OK;
}

void pm__queue_close(pm__queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_full);
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

static size_t read_guarded(pm__queue *q, const size_t *field)
{
    pthread_mutex_lock(&q->mu);
    size_t v = *field;
    pthread_mutex_unlock(&q->mu);
    return v;
}

size_t pm__queue_length(pm__queue *q)
{
    return read_guarded(q, &q->length);
}

size_t pm__queue_waiting_pushers(pm__queue *q)
{
    return read_guarded(q, &q->waiting_pushers);
}

size_t pm__queue_waiting_poppers(pm__queue *q)
{
    return read_guarded(q, &q->waiting_poppers);
}
