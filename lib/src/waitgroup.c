/* Wait group: add before handing work out, done when it is finished, wait for zero. */
#include "internal.h"

int pm__waitgroup_init(pm__waitgroup *wg)
{
    wg->count = 0;
    wg->waiters = 0;
    if (pthread_mutex_init(&wg->mu, NULL) != 0)
        return PM_ERR_THREAD;
    if (pthread_cond_init(&wg->zero, NULL) != 0) {
        pthread_mutex_destroy(&wg->mu);
        return PM_ERR_THREAD;
    }
    return PM_OK;
}

void pm__waitgroup_destroy(pm__waitgroup *wg)
{
    pthread_cond_destroy(&wg->zero);
    pthread_mutex_destroy(&wg->mu);
}

void pm__waitgroup_add(pm__waitgroup *wg, long n)
{
    pthread_mutex_lock(&wg->mu);
    wg->count += n;
    if (wg->count == 0)
        pthread_cond_broadcast(&wg->zero);
    pthread_mutex_unlock(&wg->mu);
}

void pm__waitgroup_done(pm__waitgroup *wg)
{
    pm__waitgroup_add(wg, -1);
}

void pm__waitgroup_wait(pm__waitgroup *wg)
{
    pthread_mutex_lock(&wg->mu);
    while (wg->count > 0) {
        wg->waiters++;
        pthread_cond_wait(&wg->zero, &wg->mu);
        wg->waiters--;
    }
    pthread_mutex_unlock(&wg->mu);
}

long pm__waitgroup_count(pm__waitgroup *wg)
{
    pthread_mutex_lock(&wg->mu);
    long v = wg->count;
    pthread_mutex_unlock(&wg->mu);
    return v;
}

long pm__waitgroup_waiters(pm__waitgroup *wg)
{
    pthread_mutex_lock(&wg->mu);
    long v = wg->waiters;
    pthread_mutex_unlock(&wg->mu);
    return v;
}
