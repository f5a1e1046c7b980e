/* A small fork-join thread pool: workers sleep on a condition variable between
 * parallel-fors; tasks are handed out through an atomic counter. */
#include "backend/cpu/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct sm_pool {
  int threads; /* including the caller */
  pthread_t *workers;
  pthread_mutex_t lock;
  pthread_cond_t wake, done;
  uint64_t generation;
  bool stop;
  int running; /* workers still inside the current job */
  sm_task_fn fn;
  void *arg;
  int64_t tasks;
  atomic_int_fast64_t next;
};

static void run_tasks(sm_pool *pool, int worker) {
  for (;;) {
    int64_t i = atomic_fetch_add(&pool->next, 1);
    if (i >= pool->tasks) return;
    pool->fn(pool->arg, i, worker);
  }
}

typedef struct worker_arg {
  sm_pool *pool;
  int index;
} worker_arg;

static void *worker_main(void *p) {
  worker_arg wa = *(worker_arg *)p;
  free(p);
  sm_pool *pool = wa.pool;
  uint64_t seen = 0;
  pthread_mutex_lock(&pool->lock);
  for (;;) {
    while (!pool->stop && pool->generation == seen) pthread_cond_wait(&pool->wake, &pool->lock);
    if (pool->stop) break;
    seen = pool->generation;
    pthread_mutex_unlock(&pool->lock);
    run_tasks(pool, wa.index);
    pthread_mutex_lock(&pool->lock);
    if (--pool->running == 0) pthread_cond_signal(&pool->done);
  }
  pthread_mutex_unlock(&pool->lock);
  return NULL;
}

seqmix_status sm_pool_create(int threads, sm_pool **out) {
  sm_pool *pool = calloc(1, sizeof *pool);
  if (!pool) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "cpu backend: out of host memory");
  pool->threads = threads < 1 ? 1 : threads;
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done, NULL);
  pool->workers = calloc((size_t)pool->threads, sizeof *pool->workers);
  if (!pool->workers) goto fail;
  for (int i = 1; i < pool->threads; ++i) {
    worker_arg *wa = malloc(sizeof *wa);
    if (!wa) goto fail_threads;
    *wa = (worker_arg){pool, i};
    if (pthread_create(&pool->workers[i], NULL, worker_main, wa) != 0) {
      free(wa);
      goto fail_threads;
    }
    continue;
  fail_threads:
    pool->threads = i; /* destroy joins the ones started */
    sm_pool_destroy(pool);
    return sm_fail(SEQMIX_ERROR_BACKEND, "pthread_create: cannot start CPU worker threads");
  }
  *out = pool;
  return SEQMIX_OK;
fail:
  free(pool);
  return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "cpu backend: out of host memory");
}

void sm_pool_destroy(sm_pool *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->lock);
  pool->stop = true;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  for (int i = 1; i < pool->threads; ++i) pthread_join(pool->workers[i], NULL);
  pthread_mutex_destroy(&pool->lock);
  pthread_cond_destroy(&pool->wake);
  pthread_cond_destroy(&pool->done);
  free(pool->workers);
  free(pool);
}

int sm_pool_threads(const sm_pool *pool) { return pool->threads; }

void sm_pool_run(sm_pool *pool, int64_t tasks, sm_task_fn fn, void *arg) {
  if (tasks <= 0) return;
  if (pool->threads == 1 || tasks == 1) {
    for (int64_t i = 0; i < tasks; ++i) fn(arg, i, 0);
    return;
  }
  pthread_mutex_lock(&pool->lock);
  pool->fn = fn;
  pool->arg = arg;
  pool->tasks = tasks;
  atomic_store(&pool->next, 0);
  pool->running = pool->threads - 1;
  pool->generation++;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  run_tasks(pool, 0);
  pthread_mutex_lock(&pool->lock);
  while (pool->running > 0) pthread_cond_wait(&pool->done, &pool->lock);
  pthread_mutex_unlock(&pool->lock);
}
